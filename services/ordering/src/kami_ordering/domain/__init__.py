"""The ordering domain: the order aggregate (the purchase saga), the terms an
order is placed against, and timeline summaries. Pure: no I/O, no clock."""
