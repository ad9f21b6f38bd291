"""The Open Inference Protocol over gRPC on a replica: KServe's ``inference.GRPCInferenceService``
(ServerLive, ServerReady, ModelReady, ServerMetadata, ModelMetadata, ModelInfer), served by a
``grpc.aio`` server on the replica's event loop so that ModelInfer feeds the same batcher as HTTP.

``oip.proto`` is our copy of KServe's messages under a package of our own (why: see its header);
``oip_pb2.py``/``.pyi`` are generated from it by ``generate.sh`` and committed, so installing
inferbox needs no protobuf compiler and CI runs what was reviewed."""
