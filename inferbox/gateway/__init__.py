"""The gateway: the data plane for published models. Routes by (host, externalPath), checks the API key
(or an allowed tenant's JWT), enforces the publication's limits, counts usage, forwards to a replica."""
