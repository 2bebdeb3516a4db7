"""A CRI client, as the kubelet is one: calls one method of containerd's runtime.v1 RuntimeService.

    cri.py SOCKET METHOD REQUEST_JSON

REQUEST_JSON is the request message in protobuf's JSON mapping (proto field names or lowerCamelCase). The
answer goes to stdout one field a line, `path<TAB>value`, paths dotted (`status.exit_code`, list items by
index), every field shown, defaults included; the first line, `seconds`, is how long the call took, timed
around the call alone. A failed call prints the gRPC status to stderr and exits 1.

Runs with the venv of tests/cri/setup.sh, whose site-packages hold cri_api_pb2, generated from the CRI's
api.proto.
"""

import json
import sys
import time

import grpc
from google.protobuf import json_format

import cri_api_pb2

SERVICE = "runtime.v1.RuntimeService"
# Longer than any StopContainer of the tests (its timeout, then the SIGKILL and the exit).
DEADLINE_SECONDS = 300


def flatten(value, path, lines):
    """`path<TAB>value` for every leaf of `value`; newlines in strings escaped, so one field is one line."""
    if isinstance(value, dict):
        for key, item in value.items():
            flatten(item, f"{path}.{key}" if path else key, lines)
    elif isinstance(value, list):
        for index, item in enumerate(value):
            flatten(item, f"{path}.{index}", lines)
    else:
        text = value if isinstance(value, str) else json.dumps(value)
        lines.append(f"{path}\t{text.replace(chr(92), chr(92) * 2).replace(chr(10), chr(92) + 'n')}")


def main():
    socket, method_name, request_json = sys.argv[1:4]
    method = cri_api_pb2.DESCRIPTOR.services_by_name["RuntimeService"].methods_by_name[method_name]
    request_type = getattr(cri_api_pb2, method.input_type.name)
    response_type = getattr(cri_api_pb2, method.output_type.name)
    request = json_format.Parse(request_json, request_type())
    with grpc.insecure_channel(f"unix://{socket}") as channel:
        call = channel.unary_unary(
            f"/{SERVICE}/{method_name}",
            request_serializer=request_type.SerializeToString,
            response_deserializer=response_type.FromString,
        )
        # Connect first: the time below is the call's own, not the channel's set-up.
        grpc.channel_ready_future(channel).result(timeout=DEADLINE_SECONDS)
        started = time.monotonic()
        try:
            response = call(request, timeout=DEADLINE_SECONDS)
        except grpc.RpcError as error:
            print(f"{method_name}: {error.code().name}: {error.details()}", file=sys.stderr)
            return 1
        took = time.monotonic() - started
    lines = [f"seconds\t{took:.6f}"]
    fields = json_format.MessageToDict(
        response, preserving_proto_field_name=True, always_print_fields_with_no_presence=True
    )
    flatten(fields, "", lines)
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
