"""Policy engines behind one ``PolicyEngine`` protocol, and the OPA bundle loader they share."""
