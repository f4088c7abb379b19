"""The store contract: one suite per protocol of `coldbrew.store.base.Store`, run against every
implementation listed in `conftest.IMPLEMENTATIONS`."""
