"""One router per area of the site. Add an area by adding its module here."""

from __future__ import annotations

from fastapi import APIRouter

from kami_webfront.routes import account, ops, orders, seller, shop, tickets

ROUTERS: tuple[APIRouter, ...] = (
    shop.router,
    account.router,
    orders.router,
    tickets.router,
    seller.router,
    ops.router,
)
