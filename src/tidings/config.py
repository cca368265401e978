"""The one configuration schema (``tidings.toml``), validated with pydantic.

Later issues extend these models; every field has a default so that no file is needed."""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, ValidationError, model_validator

from .errors import ConfigError

DEFAULT_SECTIONS: list[dict[str, Any]] = [
    {
        "name": "🌟 AI 相关",
        "keywords": [
            "AI", "LLM", "GPT", "大模型", "模型", "Agent", "RAG", "Transformer", "Llama", "Qwen", "DeepSeek",
            "Mixtral", "OpenAI", "Claude", "Gemini", "prompt", "提示词", "微调", "向量", "embedding", "推理",
            "训练", "多模态", "Diffusion", "机器学习", "深度学习", "神经网络", "LoRA", "ChatGPT", "AIGC",
            "智能体", "Copilot", "Sora", "量化", "对齐", "RLHF", "MoE", "Hugging",
            "Coze", "扣子", "Ollama", "Anthropic", "Kimi", "Grok", "Mistral", "Stable Diffusion", "文生图", "NLP",
            "知识图谱", "AGI", "论文",
        ],
    },
    {
        "name": "⭐️ Go & 云原生 & Rust 相关",
        "keywords": [
            "Go", "Golang", "goroutine", "Rust", "Kubernetes", "k8s", "云原生", "Docker", "容器", "gRPC",
            "Istio", "eBPF", "etcd", "Helm", "Cargo", "channel", "GC", "泛型", "cloud native", "Service Mesh",
            "Gin", "Prometheus", "Grafana", "OpenTelemetry", "可观测", "Skywalking", "Ingress", "运维", "SRE", "Pod",
            "金丝雀", "灰度", "滚动发布", "Actix", "Axum", "Tokio", "pprof", "DevOps", "Serverless", "Envoy", "Wasm",
            "rustc", "rustup", "Clippy", "crate", "crates",
        ],
    },
    {
        "name": "📒 后端相关",
        "keywords": [
            "MySQL", "Redis", "Kafka", "数据库", "分布式", "微服务", "Java", "Spring", "后端", "缓存", "消息队列",
            "PostgreSQL", "SQL", "架构", "高并发", "性能", "Linux", "网络", "TCP", "HTTP", "JVM", "系统设计",
            "RocketMQ", "Elasticsearch", "Nacos", "ZooKeeper", "Raft", "Paxos", "Netty", "HBase", "分库分表", "索引",
            "面试", "网关", "链路追踪", "高可用", "共识", "一致性", "Dubbo", "RPC", "MongoDB", "ClickHouse", "限流",
            "熔断", "DDD",
        ],
    },
    {
        "name": "📒 前端相关",
        "keywords": [
            "前端", "JavaScript", "TypeScript", "React", "Vue", "CSS", "HTML", "浏览器", "Node", "Webpack",
            "Vite", "Next.js", "Svelte", "Chrome", "DOM", "npm", "组件", "小程序", "Flutter", "WebAssembly",
            "Tailwind", "VSCode", "Astro", "Taro", "鸿蒙", "Electron", "Tauri", "Deno", "Bun", "Rspack", "esbuild",
            "SSR", "Hooks", "Nuxt", "Canvas", "WebGL", "SVG",
        ],
    },
]
FALLBACK_SECTION = "📒 其他"


class Strict(BaseModel):
    """Empty list and dict defaults are written ``[]`` and ``{}``: pydantic copies a mutable default
    for each instance, and ``Field(default_factory=list)`` costs more, since pydantic reads the
    factory's signature and a builtin's is parsed from text (3 ms of the first config a process
    builds, ``config show`` and every store command)."""

    model_config = ConfigDict(extra="forbid", defer_build=True)


class SectionConfig(Strict):
    name: str
    """The heading exactly as it is rendered, emoji included."""
    keywords: list[str] = []
    """Cold-start keyword rules for the offline classifier."""


class FetchConfig(Strict):
    connect_timeout: float = 10.0
    read_timeout: float = 30.0
    max_bytes: int = 20 * 1024 * 1024
    max_redirects: int = 5
    user_agent: str = "tidings/0.1 (+https://github.com/tidings; feed and article fetcher)"
    concurrency: int = 8
    per_host_concurrency: int = 2
    retries: int = 3
    allow_hosts: list[str] = []
    """Exact ``host:port`` entries that may be fetched even though they are private or loopback."""


class SummarizeConfig(Strict):
    min_chars: int = 80
    max_chars: int = 200
    english_sentences: int = 3
    language: str = "zh"
    """Output language of LLM summaries."""


class DigestConfig(Strict):
    slug: str = "{month}月{day}日内容汇总"
    title: str = "{month}月{day}日内容汇总"
    authors: list[str] = Field(default_factory=lambda: ["garfield"])
    tags: list[str] = []
    cover_image: str | None = None
    cover_alt: str = "alt text"
    cover_caption: str | None = None
    cover_label: str = "封面图"
    template_dir: str | None = None
    """A directory whose Jinja2 templates override the built-in ones."""
    blog_dir: str | None = None


class PublishConfig(Strict):
    see_also: bool = False
    """Under a new digest's entry, a "另见" line linking the other sources of its story. Off by
    default: imported digests never change, and new ones look as before unless asked."""


class ClassifyConfig(Strict):
    aliases: dict[str, str] = Field(default_factory=lambda: {"⭐️ Golang 相关": "⭐️ Go & 云原生 & Rust 相关"})
    """Old section name -> current section name."""
    min_training_items: int = 50
    max_tags: int = 3


class TagsConfig(Strict):
    allow_new: bool = False


class SearchConfig(Strict):
    """Search and ask (``tidings.search``)."""

    weights: dict[str, float] = Field(
        default_factory=lambda: {
            "title": 1.0, "summary": 1.0, "text": 1.0, "note": 1.0,
            "tags": 1.0, "author": 1.0, "section": 0.3, "kind": 0.3,
        }
    )
    """BM25 weight per indexed field. Even by default (tuned on the calibration halves, issue 16):
    coordination balances the concepts, and a heavier title let one common title word outrank
    the item that answers a question in its body."""
    recency_weight: float = Field(0.3, ge=0)
    """With ``--recent``: score × (1 + weight · 2^(-age / half-life)), age from the newest item."""
    recency_half_life_days: float = Field(180.0, gt=0)
    rrf_k: int = Field(60, ge=1)
    """Reciprocal rank fusion constant for hybrid search (60 is the usual choice)."""
    synonyms: list[list[str]] = []
    """Extra equivalence sets for query expansion, e.g. ``[["向量数据库", "vector database"]]``."""
    refusal_threshold: float | None = Field(None, ge=0, le=1)
    """Evidence below this makes ``ask`` refuse; default: the value calibrated on evals/queries.jsonl."""
    embed_max_chars: int = Field(512, ge=32)
    """Characters of title + summary + text embedded per item (small local models have small contexts)."""
    rewrite: bool = False
    """With a model configured: ask it once per query for a few alternative phrasings (cached) and fuse
    their rankings with the query's own (``search/rewrite.py``); any model failure searches plainly."""
    snippet_chars: int = Field(160, ge=40)


_DURATION_PART = re.compile(r"(\d+(?:\.\d+)?)\s*(h|min|m|s)?\s*")
_UNIT_SECONDS = {"h": 3600.0, "min": 60.0, "m": 60.0, "s": 1.0, None: 1.0}


def parse_duration(value: Any) -> Any:
    """Seconds as a number, or a string like ``"90s"``, ``"5m"``, ``"1h30m"``, ``"2.5min"``: local
    models can need minutes per call, and "600" is easy to misread."""
    if not isinstance(value, str):
        return value
    text = value.strip().lower()
    parts = list(_DURATION_PART.finditer(text))
    if not text or "".join(m.group(0) for m in parts) != text or (len(parts) > 1 and parts[-1].group(2) is None):
        raise ValueError(f"not a duration: {value!r} (use seconds, or e.g. '90s', '5m', '1h30m')")
    return sum(float(m.group(1)) * _UNIT_SECONDS[m.group(2)] for m in parts)


Duration = Annotated[float, BeforeValidator(parse_duration), Field(gt=0)]


class ModelConfig(Strict):
    """One model tidings may call, ``[models.NAME]`` in tidings.toml; ``routes`` picks one per task."""

    provider: Literal["openai", "llamacpp"] = "openai"
    """``openai``: any OpenAI-compatible endpoint (OpenAI, DeepSeek, DashScope, Ollama, vLLM, llama.cpp
    server); ``llamacpp``: a GGUF file run in-process (``pip install 'tidings[local]'``)."""
    base_url: str | None = None
    model: str = ""
    """The model id sent to the endpoint; for ``llamacpp`` a label (default: the file name)."""
    api_key_env: str | None = None
    """Name of the environment variable holding the API key; keys never live in the config file."""
    headers: dict[str, str] = {}
    timeout: Duration = 120.0
    """Per call, seconds or e.g. ``"5m"``."""
    connect_timeout: Duration = 10.0
    max_concurrency: int = Field(2, ge=1)
    max_retries: int = Field(3, ge=0)
    """Retries on 429, 5xx, timeouts and connection errors (never on 400/401/context length)."""
    max_tokens: int = Field(512, ge=1)
    temperature: float = Field(0.2, ge=0, le=2)
    context_tokens: int = Field(8192, ge=256)
    """The model's context window; long inputs are reduced to fit it."""
    json_mode: Literal["json_object", "json_schema", "grammar", "off"] = "json_object"
    """How JSON is requested: ``json_object`` (widely supported), ``json_schema`` (OpenAI structured
    outputs), ``grammar`` (json_object plus the schema: llama.cpp constrains decoding), ``off``."""
    model_path: str | None = None
    """``llamacpp`` only: the GGUF file."""
    n_ctx: int = Field(2048, ge=256)
    """``llamacpp`` only: the context size to allocate."""
    n_threads: int | None = None

    @model_validator(mode="after")
    def _provider_fields(self) -> ModelConfig:
        if self.provider == "openai" and not self.model:
            raise ValueError("model: required for provider 'openai' (the model id the endpoint expects)")
        if self.provider == "llamacpp" and not self.model_path:
            raise ValueError("model_path: required for provider 'llamacpp' (the GGUF file)")
        return self


LLM_TASKS = ("summarize", "classify", "translate", "ask", "embed")


class RoutesConfig(Strict):
    """Task -> model name (a key of ``[models]``); ``default`` serves tasks without a route.
    No route and no models: tidings stays offline."""

    default: str | None = None
    summarize: str | None = None
    classify: str | None = None
    translate: str | None = None
    ask: str | None = None
    embed: str | None = None
    embed_query: str | None = None
    """The model that embeds a search query, when queries are embedded unlike documents (e5 models
    read "query: " and "passage: " differently; an OpenAI-compatible e5 server names the two
    ``e5-query`` and ``e5-passage``). Unset: queries go through ``embed`` like the documents."""


class LLMConfig(Strict):
    """How the LLM tasks behave; which model runs a task is ``routes``."""

    use_for: list[Literal["summarize", "classify"]] = []
    """Tasks that use the LLM even without ``--llm``."""
    json_retries: int = Field(2, ge=0)
    """Invalid JSON or schema: ask again with the error this many times, then fall back offline."""
    classify_below: float = Field(0.5, ge=0, le=1)
    """Below this confidence the local classifier's section is uncertain: the LLM is consulted only
    for such items (with ``--llm``), and the week view marks them for the curator to check."""
    summary_input_tokens: int = Field(3000, ge=100)
    """Longer articles are reduced to title, lead and the best sentences within this many tokens."""
    max_vocabulary: int = Field(200, ge=0)
    """At most this many existing tags (most used first) are offered to the classifier prompt."""
    style_examples: int = Field(2, ge=0)
    """Human summaries shown to the summarize prompt as examples of the digest's style."""
    translate_language: str = "zh"
    translate_chunk_tokens: int = Field(1200, ge=50)
    budget_tokens: int | None = Field(None, ge=0)
    """A default for ``--budget-tokens``: no LLM call is made that would go beyond it."""


class WebConfig(Strict):
    """``tidings serve``."""

    token: str | None = None
    """Required on every request when set; needed to bind anything but loopback (TIDINGS_TOKEN wins)."""


class Config(Strict):
    timezone: str | None = None
    """IANA name; default: the system's."""
    week_ends_on: Literal["monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday"] = "sunday"
    sections: list[SectionConfig] = Field(default_factory=lambda: [SectionConfig(**s) for s in DEFAULT_SECTIONS])
    fallback_section: str = FALLBACK_SECTION
    fetch: FetchConfig = Field(default_factory=FetchConfig)
    summarize: SummarizeConfig = Field(default_factory=SummarizeConfig)
    digest: DigestConfig = Field(default_factory=DigestConfig)
    classify: ClassifyConfig = Field(default_factory=ClassifyConfig)
    publish: PublishConfig = Field(default_factory=PublishConfig)
    tags: TagsConfig = Field(default_factory=TagsConfig)
    search: SearchConfig = Field(default_factory=SearchConfig)
    glossary: dict[str, str] = {}
    user_dictionary: list[str] = []
    """Words jieba must keep whole, e.g. product names."""
    prices: dict[str, dict[str, float]] = {}
    """Model name (a ``[models]`` key or model id) -> ``{input = …, output = …}`` per million tokens."""
    models: dict[str, ModelConfig] = {}
    routes: RoutesConfig = Field(default_factory=RoutesConfig)
    llm: LLMConfig = Field(default_factory=LLMConfig)
    web: WebConfig = Field(default_factory=WebConfig)
    workers: int = Field(default_factory=lambda: os.cpu_count() or 1, ge=1)
    """Processes for the CPU stages (extract, fingerprint, summarize, classify); default: the core
    count. 1 runs them in the calling process. Fetching keeps its own threads (``fetch.concurrency``)."""

    @model_validator(mode="after")
    def _routes_name_models(self) -> Config:
        for task, name in self.routes.model_dump().items():
            if name is not None and name not in self.models:
                known = ", ".join(sorted(self.models)) or "none configured"
                raise ValueError(f"routes.{task}: no model named {name!r} in [models] ({known})")
        return self

    @property
    def section_names(self) -> list[str]:
        return [s.name for s in self.sections]


def load_config(path: Path | None) -> Config:
    """Load ``path``, or ``./tidings.toml`` when it exists, or the built-in defaults."""
    if path is None:
        default = Path("tidings.toml")
        if not default.exists():
            return Config()
        path = default
    import tomllib  # here, not at the top: its regexes cost 5 ms of every command that reads no file

    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError as exc:
        raise ConfigError(f"config file not found: {path}") from exc
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML: {exc}") from exc
    try:
        return Config.model_validate(data)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in err['loc'])}: {err['msg']}" for err in exc.errors()
        )
        raise ConfigError(f"{path}: {problems}") from exc


def canonical_section(name: str | None, config: Config) -> str | None:
    """A section's current name: old names map through ``classify.aliases``."""
    if name is None:
        return None
    return config.classify.aliases.get(name, name)
