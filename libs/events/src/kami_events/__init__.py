"""What every Kami service shares: events, their envelope and topics, the
event store, the outbox relay and the idempotent consumer.

Importing the package registers every event of the catalogue, so `decode`
knows all of them wherever it runs.
"""

from kami_events import catalogue as catalogue
from kami_events.money import CNY as CNY
from kami_events.money import Currency as Currency
from kami_events.money import Fen as Fen
from kami_events.money import Money as Money
from kami_events.money import PositiveFen as PositiveFen
