"""HTTP routes, one module per resource. Routes raise ``GatewayError``s; they never build error responses."""
