#!/bin/sh
# Regenerate oip_pb2.py and oip_pb2.pyi from oip.proto (needs grpcio-tools). The generated modules are
# committed so that installing inferbox needs no protoc; run this after editing the .proto.
set -eu
cd "$(dirname "$0")/../../.."
python -m grpc_tools.protoc -I . --python_out=. --pyi_out=. inferbox/server/grpc/oip.proto
