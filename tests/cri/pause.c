/* The pod sandbox's process, as the kubelet's pause image runs it: PID 1 of the pod's shared namespaces,
   asleep in pause() until SIGINT or SIGTERM ends it, reaping whatever is reparented to it meanwhile.
   Built static by tests/cri.rs (cc -static) into an image FROM scratch: no registry needed. */
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

static void stop(int signal) { (void)signal; _exit(0); }
static void reap(int signal) { (void)signal; while (waitpid(-1, NULL, WNOHANG) > 0) {} }

int main(void) {
    struct sigaction on_stop = { .sa_handler = stop };
    struct sigaction on_child = { .sa_handler = reap, .sa_flags = SA_NOCLDSTOP | SA_RESTART };
    sigaction(SIGINT, &on_stop, NULL);
    sigaction(SIGTERM, &on_stop, NULL);
    sigaction(SIGCHLD, &on_child, NULL);
    for (;;) pause();
}
