"""The model server's REST endpoints, one module per protocol (KServe V1, Open Inference Protocol V2),
as KServe keeps its `v1_endpoints` and `v2_endpoints` apart. The app routes to them; they ask it for
the model through `ModelHost` and decode and encode with `inferbox.server.protocol`."""
