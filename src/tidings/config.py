"""The one configuration schema (``tidings.toml``), validated with pydantic.

Later issues extend these models; every field has a default so that no file is needed."""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from .errors import ConfigError

DEFAULT_SECTIONS: list[dict[str, Any]] = [
    {
        "name": "🌟 AI 相关",
        "keywords": [
            "AI", "LLM", "GPT", "大模型", "模型", "Agent", "RAG", "Transformer", "Llama", "Qwen", "DeepSeek",
            "Mixtral", "OpenAI", "Claude", "Gemini", "prompt", "提示词", "微调", "向量", "embedding", "推理",
            "训练", "多模态", "Diffusion", "机器学习", "深度学习", "神经网络", "LoRA", "ChatGPT", "AIGC",
            "智能体", "Copilot", "Sora", "token", "量化", "对齐", "RLHF", "MoE", "Hugging",
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
    model_config = ConfigDict(extra="forbid")


class SectionConfig(Strict):
    name: str
    """The heading exactly as it is rendered, emoji included."""
    keywords: list[str] = Field(default_factory=list)
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
    allow_hosts: list[str] = Field(default_factory=list)
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
    tags: list[str] = Field(default_factory=list)
    cover_image: str | None = None
    cover_alt: str = "alt text"
    cover_caption: str | None = None
    cover_label: str = "封面图"
    template_dir: str | None = None
    """A directory whose Jinja2 templates override the built-in ones."""
    blog_dir: str | None = None


class ClassifyConfig(Strict):
    aliases: dict[str, str] = Field(default_factory=lambda: {"⭐️ Golang 相关": "⭐️ Go & 云原生 & Rust 相关"})
    """Old section name -> current section name."""
    min_training_items: int = 50
    max_tags: int = 3


class TagsConfig(Strict):
    allow_new: bool = False


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
    tags: TagsConfig = Field(default_factory=TagsConfig)
    glossary: dict[str, str] = Field(default_factory=dict)
    user_dictionary: list[str] = Field(default_factory=list)
    """Words jieba must keep whole, e.g. product names."""
    prices: dict[str, dict[str, float]] = Field(default_factory=dict)
    models: dict[str, dict[str, Any]] = Field(default_factory=dict)
    routes: dict[str, str] = Field(default_factory=dict)

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
