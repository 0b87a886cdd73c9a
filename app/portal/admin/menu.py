"""Menu entries of SQLAdmin's sidebar that lead to our own pages and to other tools."""

from __future__ import annotations

from sqladmin._menu import CategoryMenu, ItemMenu
from starlette.requests import Request


class LinkMenu(ItemMenu):
    """A sidebar link to a fixed URL (our pages, Flower, the Faust web view)."""

    def __init__(self, name: str, url: str, icon: str | None = None) -> None:
        super().__init__(name=name, icon=icon)
        self.link = url

    def is_active(self, request: Request) -> bool:
        return self.link.startswith("/") and request.url.path.startswith(self.link)

    def url(self, request: Request) -> str:
        return self.link

    @property
    def type_(self) -> str:
        return "View"  # rendered like a model view's entry


def category(name: str, icon: str, *links: LinkMenu) -> CategoryMenu:
    """A sidebar group of links."""
    menu = CategoryMenu(name=name, icon=icon)
    for link in links:
        menu.add_child(link)
    return menu
