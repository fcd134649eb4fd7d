"""The catalog's pure domain: aggregates that take commands and emit events,
and the search and price-comparison rules. No I/O, no clock."""
