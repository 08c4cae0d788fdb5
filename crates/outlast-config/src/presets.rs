//! Known providers: base URL, protocol, default models and the environment variable that
//! carries their key, so that `preset = "deepseek"` (or just an API key) is enough.

use crate::Protocol;

#[derive(Debug, Clone, Copy)]
pub struct Preset {
    pub name: &'static str,
    pub protocol: Protocol,
    pub base_url: &'static str,
    /// Models listed by `/v1/models` and used for the routes built from the environment.
    pub models: &'static [&'static str],
    /// The variable `outlast serve` reads when no config file is given; `None` for local
    /// servers that need no key.
    pub key_env: Option<&'static str>,
}

pub const PRESETS: &[Preset] = &[
    Preset {
        name: "openai",
        protocol: Protocol::Openai,
        base_url: "https://api.openai.com/v1",
        models: &["gpt-4o-mini", "gpt-4o"],
        key_env: Some("OPENAI_API_KEY"),
    },
    Preset {
        name: "anthropic",
        protocol: Protocol::Anthropic,
        base_url: "https://api.anthropic.com",
        models: &["claude-3-5-haiku-latest", "claude-sonnet-4-0"],
        key_env: Some("ANTHROPIC_API_KEY"),
    },
    Preset {
        name: "gemini",
        protocol: Protocol::Gemini,
        base_url: "https://generativelanguage.googleapis.com",
        models: &["gemini-2.0-flash", "gemini-2.5-flash"],
        key_env: Some("GEMINI_API_KEY"),
    },
    Preset {
        name: "perplexity",
        protocol: Protocol::Openai,
        base_url: "https://api.perplexity.ai",
        models: &["sonar", "sonar-pro"],
        key_env: Some("PERPLEXITY_API_KEY"),
    },
    Preset {
        name: "deepseek",
        protocol: Protocol::Openai,
        base_url: "https://api.deepseek.com/v1",
        models: &["deepseek-chat", "deepseek-reasoner"],
        key_env: Some("DEEPSEEK_API_KEY"),
    },
    Preset {
        name: "mistral",
        protocol: Protocol::Openai,
        base_url: "https://api.mistral.ai/v1",
        models: &["mistral-small-latest", "mistral-large-latest"],
        key_env: Some("MISTRAL_API_KEY"),
    },
    Preset {
        name: "azure",
        protocol: Protocol::Openai,
        // Per resource: https://{resource}.openai.azure.com/openai (give base_url).
        base_url: "",
        models: &[],
        key_env: None,
    },
    Preset {
        name: "groq",
        protocol: Protocol::Openai,
        base_url: "https://api.groq.com/openai/v1",
        models: &["llama-3.3-70b-versatile", "llama-3.1-8b-instant"],
        key_env: Some("GROQ_API_KEY"),
    },
    Preset {
        name: "openrouter",
        protocol: Protocol::Openai,
        base_url: "https://openrouter.ai/api/v1",
        models: &["openai/gpt-4o-mini", "anthropic/claude-3.5-haiku"],
        key_env: Some("OPENROUTER_API_KEY"),
    },
    Preset {
        name: "qwen",
        protocol: Protocol::Openai,
        // DashScope's OpenAI-compatible mode (international endpoint).
        base_url: "https://dashscope-intl.aliyuncs.com/compatible-mode/v1",
        models: &["qwen-plus", "qwen-turbo"],
        key_env: Some("DASHSCOPE_API_KEY"),
    },
    Preset {
        name: "moonshot",
        protocol: Protocol::Openai,
        base_url: "https://api.moonshot.ai/v1",
        models: &["kimi-k2-0711-preview", "moonshot-v1-8k"],
        key_env: Some("MOONSHOT_API_KEY"),
    },
    Preset {
        name: "zhipu",
        protocol: Protocol::Openai,
        base_url: "https://open.bigmodel.cn/api/paas/v4",
        models: &["glm-4-plus", "glm-4-flash"],
        key_env: Some("ZHIPUAI_API_KEY"),
    },
    Preset {
        name: "xai",
        protocol: Protocol::Openai,
        base_url: "https://api.x.ai/v1",
        models: &["grok-3", "grok-3-mini"],
        key_env: Some("XAI_API_KEY"),
    },
    Preset {
        name: "together",
        protocol: Protocol::Openai,
        base_url: "https://api.together.xyz/v1",
        models: &["meta-llama/Llama-3.3-70B-Instruct-Turbo"],
        key_env: Some("TOGETHER_API_KEY"),
    },
    Preset {
        name: "fireworks",
        protocol: Protocol::Openai,
        base_url: "https://api.fireworks.ai/inference/v1",
        models: &["accounts/fireworks/models/llama-v3p1-70b-instruct"],
        key_env: Some("FIREWORKS_API_KEY"),
    },
    Preset {
        name: "ollama",
        protocol: Protocol::Openai,
        base_url: "http://127.0.0.1:11434/v1",
        models: &["llama3.2"],
        key_env: None,
    },
    Preset {
        name: "vllm",
        protocol: Protocol::Openai,
        base_url: "http://127.0.0.1:8000/v1",
        models: &[],
        key_env: None,
    },
];

pub fn find(name: &str) -> Option<&'static Preset> {
    PRESETS.iter().find(|p| p.name == name)
}

/// The providers `outlast serve` builds from the environment, in failover order: the first
/// set variable's provider is the primary of the default route.
pub const FROM_ENV: &[&str] = &["openai", "anthropic", "gemini", "perplexity", "deepseek"];
