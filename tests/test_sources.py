from deepresearch.sources import KEY_PATTERN, SourceRegistry, cite_key, normalize_url


def test_normalisation_merges_spellings_of_one_page():
    variants = [
        "https://Example.com/a/b/?utm_source=x&b=2&a=1",
        "http://example.com:80/a/b?a=1&b=2",
        "https://example.com/a//b?b=2&a=1&fbclid=zzz#:~:text=hello",
        "  https://EXAMPLE.com./a/b?a=1&b=2  ",
    ]
    assert len({normalize_url(v) for v in variants}) == 1
    assert len({cite_key(v) for v in variants}) == 1


def test_distinct_pages_and_anchors_stay_distinct():
    assert cite_key("https://example.com/a") != cite_key("https://example.com/b")
    assert cite_key("https://docs.example.org/page.html#section-2") != cite_key(
        "https://docs.example.org/page.html"
    )
    assert cite_key("https://example.com/?q=1") != cite_key("https://example.com/?q=2")


def test_key_shape_and_stability():
    key = cite_key("https://www.iea.org/reports/world-energy-outlook-2024")
    assert KEY_PATTERN.fullmatch(key)
    assert key == cite_key("https://www.iea.org/reports/world-energy-outlook-2024/")


def test_registry_keeps_first_url_and_upgrades_metadata():
    registry = SourceRegistry()
    first = registry.add("https://example.com/a?utm_medium=mail", title="", snippet="short")
    again = registry.add("https://example.com/a", title="The A page", snippet="other", fetched=True)
    assert first is again
    assert len(registry) == 1
    assert again.url == "https://example.com/a?utm_medium=mail"
    assert again.title == "The A page" and again.snippet == "short" and again.fetched
    assert registry.get(first.key) is first
    assert registry.lookup_url("http://example.com/a/") is first


def test_registry_replay_gives_same_keys_in_same_order():
    registry = SourceRegistry()
    urls = [f"https://example.com/{i}" for i in range(50)]
    for url in urls:
        registry.add(url)
    replayed = SourceRegistry()
    replayed.extend(s.to_dict() for s in registry)
    assert [s.key for s in replayed] == [s.key for s in registry]


def test_key_collision_is_resolved_deterministically(monkeypatch):
    import deepresearch.sources as sources

    real = sources.cite_key

    def colliding(url: str, length: int = 8) -> str:
        return "web_00000000" if length == 8 else real(url, length)

    monkeypatch.setattr(sources, "cite_key", colliding)
    registry = SourceRegistry()
    a = registry.add("https://a.example/")
    b = registry.add("https://b.example/")
    assert a.key == "web_00000000"
    assert b.key != a.key and KEY_PATTERN.fullmatch(b.key) and len(b.key) == len("web_") + 10
