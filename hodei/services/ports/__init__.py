"""The small interfaces the use cases need: the store (``store``, and the operators'
reads, ``reads``), the broker (``publisher``), a provider's infrastructure
(``providers``) and the clock (``clock``). ``hodei.store``, ``hodei.queueing`` and
``hodei.providers`` implement them; no infrastructure is imported here."""
