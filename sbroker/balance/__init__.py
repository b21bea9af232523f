"""Balancing requests across brokers: choice functions and the Balancer (balancing.md).

* :func:`better_choice`, :func:`random_choice`, :func:`affinity_choice`:
  pure choices over in-process hosts (regulation.md B5-B7).
* :class:`Balancer` / :func:`open_balancer`: one broker's face over many
  endpoints, local or remote, with five policies, ejection with a single
  probe, and dynamic endpoint sets fed by :class:`Endpoints` sources.
"""

from sbroker.balance.balancer import Balancer, EndpointInfo, NoEndpoint, Policy, open_balancer
from sbroker.balance.choice import affinity_choice, better_choice, random_choice
from sbroker.balance.discovery import Retry
from sbroker.balance.ejection import Ejection
from sbroker.balance.endpoints import DnsEndpoints, Endpoints, FileEndpoints, StaticEndpoints
from sbroker.balance.remote import Connector

__all__ = [
    "Balancer",
    "Connector",
    "DnsEndpoints",
    "Ejection",
    "EndpointInfo",
    "Endpoints",
    "FileEndpoints",
    "NoEndpoint",
    "Policy",
    "Retry",
    "StaticEndpoints",
    "affinity_choice",
    "better_choice",
    "open_balancer",
    "random_choice",
]
