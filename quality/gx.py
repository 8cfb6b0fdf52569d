"""great_expectations, the way the feed and score-card suites use it: imported lazily, analytics off, run in an
ephemeral context.

great_expectations takes 2-3 s to import, so it is imported on first use, with analytics off, into an ephemeral
(in-memory) context made per call: it writes no files, sends nothing, and shares no state between threads.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from great_expectations.core import ExpectationSuite


def load() -> Any:
    """great_expectations, imported on first use (2-3 s) with usage analytics off."""
    os.environ["GX_ANALYTICS_ENABLED"] = "false"  # read by GX at import; a gateway sends nothing anywhere
    import great_expectations

    return great_expectations


def context() -> Any:
    """A fresh in-memory context: no project directory, no progress bars, no analytics, nothing shared."""
    gx = load()
    from great_expectations.data_context.types.base import (
        DataContextConfig,
        InMemoryStoreBackendDefaults,
        ProgressBarsConfig,
    )

    config = DataContextConfig(analytics_enabled=False, progress_bars=ProgressBarsConfig(globally=False),
                               store_backend_defaults=InMemoryStoreBackendDefaults())
    return gx.get_context(mode="ephemeral", project_config=config)


class Runner:
    """Validates data frames against suites in one ephemeral context (one pandas data source, reused per frame)."""

    def __init__(self) -> None:
        asset = context().data_sources.add_pandas("mediagate").add_dataframe_asset("frame")
        self.batches = asset.add_batch_definition_whole_dataframe("whole")

    def validate(self, frame: Any, suite: ExpectationSuite) -> Any:
        batch = self.batches.get_batch(batch_parameters={"dataframe": frame})
        return batch.validate(suite, result_format={"result_format": "COMPLETE"})


def expect(suite: Any, kind: str, rule: str, message: str, **kwargs: Any) -> None:
    """Add expectation ``kind`` with our short ``rule`` and a message fragment in its meta."""
    gx = load()
    meta = {"rule": rule, "message": message, **kwargs.pop("meta", {})}
    suite.add_expectation(getattr(gx.expectations, kind)(meta=meta, **kwargs))


def exception_message(info: Mapping[str, Any]) -> str:
    """The message of an expectation that could not run, from its result's ``exception_info``."""
    if "exception_message" in info:
        return str(info["exception_message"])
    return "; ".join(sorted({str(v.get("exception_message")) for v in info.values() if isinstance(v, dict)}))
