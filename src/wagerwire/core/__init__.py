"""The hub's domain: channels, messages, positions, subscriptions, fan-out.

Nothing here imports a transport, a store or a broker implementation; those depend on the
protocols defined in :mod:`wagerwire.core.store` and :mod:`wagerwire.core.broker`.
"""
