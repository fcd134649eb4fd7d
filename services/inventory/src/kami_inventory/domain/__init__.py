"""The inventory's rules, free of I/O: how a key moves between states, how an
import file is read and judged, when an order may reserve keys."""
