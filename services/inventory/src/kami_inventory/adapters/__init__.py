"""The edges: MongoDB collections, encryption."""
