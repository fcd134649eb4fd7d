"""Kami web: server-rendered pages over the services' public HTTP APIs."""
