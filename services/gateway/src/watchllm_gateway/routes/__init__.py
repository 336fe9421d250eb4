"""HTTP routes, one module per API surface; they map paths to handlers and nothing more."""
