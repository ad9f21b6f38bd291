"""The control plane's domain logic: tenants, models, publications, audit. The API calls it; it calls
the store and the runtime."""
