"""The API gateway: the only public door. OAuth2 resource server, routing, circuit breakers,
rate limits, and the merged API and event documentation."""
