"""Politeness as a token bucket: a burst per host goes at once, the rest is paced, the bucket refills
at the pacing rate between steps (the fetcher lives for the whole run) and never beyond the burst, so a
long run still averages one request per delay per host. All in virtual time: no test waits."""

from __future__ import annotations

import asyncio

import pytest

from deepresearch.fetch.http import DEFAULT_HOST_BURST, FetchConfig, HttpFetcher
from tests.fakes.web_server import FakeWebSite, start_fake_web_server
from tests.fetch.test_http import Stamped, VirtualTime

DELAY = 0.25


def bursty(config: FetchConfig, burst: int = 3) -> FetchConfig:
    """``config`` with pacing on; the per-host cap is above the burst so that only pacing holds requests."""
    return config.model_copy(update={"host_delay_s": DELAY, "host_burst": burst, "per_host_concurrency": 8})


async def gather(fetcher: HttpFetcher, urls: list[str]) -> None:
    await asyncio.gather(*(fetcher.fetch(url) for url in urls))


def test_the_default_burst_is_four_and_must_be_positive() -> None:
    assert FetchConfig().host_burst == DEFAULT_HOST_BURST == 4 == FetchConfig().per_host_concurrency
    with pytest.raises(ValueError):
        FetchConfig(host_burst=0)


def test_the_first_burst_goes_at_once_and_the_next_is_paced(site: FakeWebSite, config: FetchConfig) -> None:
    time = VirtualTime()
    sent = Stamped(time)

    async def five() -> None:
        async with time.fetcher(bursty(config), sent) as fetcher:
            await gather(fetcher, [site.url(f"/counter?n={i}") for i in range(5)])

    asyncio.run(five())
    assert site.hits["/counter"] == 5
    assert sent.times(site.url("/counter")) == [0.0, 0.0, 0.0, DELAY, 2 * DELAY]
    assert time.waits == [DELAY, DELAY]  # nobody in the burst slept; each one beyond it waits one refill


def test_the_bucket_refills_between_steps_but_never_beyond_the_burst(
    site: FakeWebSite, config: FetchConfig
) -> None:
    time = VirtualTime()
    sent = Stamped(time)

    async def steps() -> None:
        async with time.fetcher(bursty(config), sent) as fetcher:
            await gather(fetcher, [site.url(f"/counter?a={i}") for i in range(3)])  # the bucket is empty
            time.now += 2 * DELAY  # the model thinks: two tokens come back
            await gather(fetcher, [site.url(f"/counter?b={i}") for i in range(3)])
            time.now += 100 * DELAY  # a long pause fills the bucket, but only to the burst
            await gather(fetcher, [site.url(f"/counter?c={i}") for i in range(4)])

    asyncio.run(steps())
    assert site.hits["/counter"] == 10
    step_two = 2 * DELAY
    step_three = step_two + DELAY + 100 * DELAY
    assert sent.times(site.url("/counter?b=")) == [step_two, step_two, step_two + DELAY]
    assert sent.times(site.url("/counter?c=")) == [step_three] * 3 + [step_three + DELAY]
    assert time.waits == [DELAY, DELAY]


def test_a_long_run_averages_one_request_per_delay(site: FakeWebSite, config: FetchConfig) -> None:
    burst, count = 3, 20
    time = VirtualTime()
    sent = Stamped(time)

    async def many() -> None:
        async with time.fetcher(bursty(config, burst), sent) as fetcher:
            await gather(fetcher, [site.url(f"/counter?n={i}") for i in range(count)])

    asyncio.run(many())
    starts = sent.times(site.url("/counter"))
    assert len(starts) == count
    assert starts[-1] == pytest.approx((count - burst) * DELAY)
    for i, first in enumerate(starts):  # no window of t seconds holds more than burst + t / delay starts
        for j in range(i, count):
            assert j - i + 1 <= burst + (starts[j] - first) / DELAY + 1e-9


def test_each_host_has_its_own_bucket(site: FakeWebSite, config: FetchConfig) -> None:
    other = start_fake_web_server()
    try:
        time = VirtualTime(held=True)  # a request that must wait parks until released
        sent = Stamped(time)

        async def both() -> None:
            async with asyncio.timeout(60), time.fetcher(bursty(config, burst=2), sent) as fetcher:
                here = [asyncio.create_task(fetcher.fetch(site.url(f"/counter?a={i}"))) for i in range(3)]
                await gather(fetcher, [other.url(f"/counter?b={i}") for i in range(2)])
                assert time.parked == 1  # the site's third request waits; the other host's burst went
                time.release()
                await asyncio.gather(*here)

        asyncio.run(both())
        assert sent.times(site.url("/counter")) == [0.0, 0.0, DELAY]
        assert sent.times(other.url("/counter")) == [0.0, 0.0]
        assert time.waits == [DELAY]
    finally:
        other.stop()


def test_a_burst_of_one_spaces_every_request_as_before(site: FakeWebSite, config: FetchConfig) -> None:
    time = VirtualTime()
    sent = Stamped(time)

    async def three() -> None:
        async with time.fetcher(bursty(config, burst=1), sent) as fetcher:
            await gather(fetcher, [site.url(f"/counter?n={i}") for i in range(3)])

    asyncio.run(three())
    assert sent.times(site.url("/counter")) == [0.0, DELAY, 2 * DELAY]


def test_the_per_host_cap_still_holds_within_a_burst(site: FakeWebSite, config: FetchConfig) -> None:
    capped = bursty(config).model_copy(update={"per_host_concurrency": 1})
    time = VirtualTime()

    async def three() -> None:
        async with time.fetcher(capped) as fetcher:
            await gather(fetcher, [site.url(f"/slots?n={i}&hold=0.05") for i in range(3)])

    asyncio.run(three())
    assert site.hits["/slots"] == 3
    assert site.max_in_flight == 1  # the burst lets them start at once; the cap still queues them
    assert time.waits == []


def test_a_step_of_four_pages_of_one_site_loads_them_together_by_default(
    site: FakeWebSite, config: FetchConfig
) -> None:
    """A run whose pages share one host is as fast as one spread over many: the default burst and
    per-host cap let a step's pages of one site start at once, as a browser would load them."""
    defaults = FetchConfig()
    polite = config.model_copy(
        update={
            "host_delay_s": defaults.host_delay_s,
            "host_burst": defaults.host_burst,
            "per_host_concurrency": defaults.per_host_concurrency,
        }
    )
    time = VirtualTime()
    sent = Stamped(time)

    async def steps() -> None:
        async with time.fetcher(polite, sent) as fetcher:
            for step in range(3):
                await gather(fetcher, [site.url(f"/slots?s{step}={i}&hold=0.01") for i in range(4)])
                time.now += 0.5  # the model thinks, the bucket refills

    asyncio.run(steps())
    assert site.hits["/slots"] == 12 and time.waits == []
    assert site.max_in_flight == 4


def test_a_host_that_answers_429_is_left_alone_as_long_as_it_asks_then_slowed(
    site: FakeWebSite, config: FetchConfig
) -> None:
    other = start_fake_web_server()
    try:
        time = VirtualTime()
        sent = Stamped(time)

        async def pushed_back() -> None:
            async with time.fetcher(bursty(config), sent) as fetcher:
                page = await fetcher.fetch(site.url("/busy?retry_after=3"))  # 429, then served
                assert page.text.startswith("Served")
                await gather(fetcher, [site.url(f"/counter?n={i}") for i in range(3)])
                await gather(fetcher, [other.url(f"/counter?n={i}") for i in range(3)])

        asyncio.run(pushed_back())
        assert site.hits["/busy"] == 2
        [retried] = sent.times(site.url("/busy"))[1:]
        assert retried == 3.0  # not before the Retry-After, whatever the retry's own pause
        # from then on one a second, no burst; the other host keeps its burst
        assert sent.times(site.url("/counter")) == [4.0, 5.0, 6.0]
        assert sent.times(other.url("/counter")) == [6.0, 6.0, 6.0]
    finally:
        other.stop()


def test_a_retry_after_beyond_the_ceiling_is_bounded(site: FakeWebSite, config: FetchConfig) -> None:
    from deepresearch.fetch.http import MAX_BACKOFF_S

    time = VirtualTime()
    sent = Stamped(time)

    async def one() -> None:
        async with time.fetcher(bursty(config), sent) as fetcher:
            await fetcher.fetch(site.url("/busy?retry_after=3600"))

    asyncio.run(one())
    assert sent.times(site.url("/busy")) == [0.0, MAX_BACKOFF_S]
