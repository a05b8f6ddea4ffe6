//! The operator's language: Simplified Chinese or English for what people read (the
//! status page, `doctor`, `check`'s explanations, `platform-test` hints). Logs stay in
//! English so that they can be searched and quoted across sites.
//!
//! The English text is the key: [`Lang::tr`] looks it up in one table and falls back to
//! the English itself, so a string not translated yet still reads well. Text with
//! figures is assembled from translated pieces around the figures.
//!
//! The page follows `[http] language` or, on `auto`, the browser's `Accept-Language`
//! ([`Lang::from_accept_language`]); the CLI follows `LC_ALL` / `LC_MESSAGES` / `LANG`
//! ([`Lang::from_env`]).

/// A language the operator reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Lang {
    #[default]
    En,
    /// Simplified Chinese (zh-CN).
    Zh,
}

impl Lang {
    /// The value of an HTML `lang` attribute.
    pub fn tag(self) -> &'static str {
        match self {
            Lang::En => "en",
            Lang::Zh => "zh-CN",
        }
    }

    /// `en`, `zh`, `zh-CN`, `zh_CN.UTF-8`… `None` for anything else.
    pub fn parse(text: &str) -> Option<Lang> {
        let t = text.trim().to_ascii_lowercase();
        let base = t.split(['-', '_', '.', '@']).next().unwrap_or("");
        match base {
            "en" | "c" | "posix" => Some(Lang::En),
            // Traditional-script locales read Simplified Chinese better than English.
            "zh" => Some(Lang::Zh),
            _ => None,
        }
    }

    /// The first supported language of an `Accept-Language` header, by weight (ties
    /// keep the header's order). `None` when it names neither.
    pub fn from_accept_language(header: &str) -> Option<Lang> {
        let mut best: Option<(u16, Lang)> = None;
        for item in header.split(',') {
            let mut parts = item.split(';');
            let tag = parts.next().unwrap_or("").trim();
            let weight = parts
                .find_map(|p| p.trim().strip_prefix("q="))
                .and_then(|q| q.trim().parse::<f32>().ok())
                .unwrap_or(1.0);
            // Whole thousandths: a weight is at most three decimals (RFC 9110).
            let weight = (weight.clamp(0.0, 1.0) * 1000.0).round() as u16;
            if weight == 0 {
                continue;
            }
            if let Some(lang) = Lang::parse(tag)
                && best.is_none_or(|(w, _)| weight > w)
            {
                best = Some((weight, lang));
            }
        }
        best.map(|(_, lang)| lang)
    }

    /// The CLI's language from the environment the way C programs choose it:
    /// `LC_ALL`, then `LC_MESSAGES`, then `LANG`; English otherwise.
    pub fn from_env() -> Lang {
        Self::from_vars(|name| std::env::var(name).ok())
    }

    /// [`from_env`](Self::from_env) over any variable source (tests).
    pub fn from_vars(get: impl Fn(&str) -> Option<String>) -> Lang {
        ["LC_ALL", "LC_MESSAGES", "LANG"]
            .iter()
            .filter_map(|name| get(name).filter(|v| !v.is_empty()))
            .map(|v| Lang::parse(&v).unwrap_or(Lang::En))
            .next()
            .unwrap_or(Lang::En)
    }

    /// `english` in this language (itself when there is no translation).
    pub fn tr(self, english: &'static str) -> &'static str {
        match self {
            Lang::En => english,
            Lang::Zh => TABLE
                .iter()
                .find(|(en, _)| *en == english)
                .map(|(_, zh)| *zh)
                .unwrap_or(english),
        }
    }

    /// "N s ago" / "N 秒前" and longer forms, for a non-negative number of seconds.
    pub fn ago(self, secs: i64) -> String {
        let s = secs.max(0);
        match (self, s) {
            (Lang::En, 0..60) => format!("{s} s ago"),
            (Lang::En, 60..3600) => format!("{} min ago", s / 60),
            (Lang::En, _) => format!("{} h {} min ago", s / 3600, (s % 3600) / 60),
            (Lang::Zh, 0..60) => format!("{s} 秒前"),
            (Lang::Zh, 60..3600) => format!("{} 分钟前", s / 60),
            (Lang::Zh, _) => format!("{} 小时 {} 分钟前", s / 3600, (s % 3600) / 60),
        }
    }
}

/// English → Simplified Chinese. Keep terms consistent with the platform's own
/// Chinese documentation (车场 lot, 车道 lane, 出入口 gate, 上报 report).
const TABLE: &[(&str, &str)] = &[
    // Status page.
    ("lot", "车场"),
    ("version", "版本"),
    ("up since", "运行自"),
    ("Healthy", "运行正常"),
    ("Degraded", "需要处理"),
    ("Occupancy", "车位占用"),
    ("free", "空余"),
    ("unknown", "未知"),
    ("Outbox", "待上报"),
    ("waiting", "条等待上报"),
    ("oldest", "最早"),
    ("Platform", "城市大脑平台"),
    ("reachable", "连接正常"),
    ("failing", "连接失败"),
    ("in a row", "次连续失败"),
    ("no contact yet", "尚未联系"),
    ("last result", "最近结果"),
    ("last success", "最近成功"),
    ("heartbeat", "心跳"),
    ("Clock", "系统时钟"),
    ("suspect", "不可信"),
    ("synchronised", "已同步"),
    ("not synchronised", "未同步"),
    ("Lanes", "车道"),
    ("entry", "入口"),
    ("exit", "出口"),
    ("no_plate", "无牌车"),
    ("port", "出入口编号"),
    ("no passage yet", "暂无通行记录"),
    ("time", "时间"),
    ("plate", "车牌"),
    ("case", "类型"),
    ("snapshot", "抓拍"),
    ("not kept", "未保留"),
    ("(no plate)", "(无车牌)"),
    ("clock suspect", "时钟不可信"),
    ("no device reported yet", "尚无设备上报"),
    ("up", "在线"),
    ("down", "离线"),
    ("Lot", "车场"),
    ("space counter", "车位计数器"),
    ("Recent alarms", "最近告警"),
    ("none", "无"),
    ("Refreshes every", "自动刷新间隔"),
    ("Occupancy, last 24 h", "近 24 小时车位占用"),
    ("Passages per hour, last 24 h", "近 24 小时每小时通行量"),
    ("passages in the last hour", "近一小时通行"),
    ("Device links, last hour", "近一小时设备连接"),
    ("no link change seen", "未见连接变化"),
    ("Reports waiting, by kind", "按类型的待上报记录"),
    ("kind", "类型"),
    ("pending", "等待"),
    ("held after a failure", "失败后暂缓"),
    ("last error", "最近错误"),
    ("Last snapshots", "最近抓拍"),
    ("no snapshot yet", "暂无抓拍"),
    ("now", "现在"),
    ("occupied", "已占用"),
    ("no data yet", "暂无数据"),
    ("Language", "语言"),
    // Report kinds.
    ("entry report", "入场上报"),
    ("entry snapshot", "入场抓拍"),
    ("exit report", "出场上报"),
    ("exit snapshot", "出场抓拍"),
    // doctor.
    ("config", "配置文件"),
    ("app secret", "应用密钥"),
    ("storage", "存储目录"),
    ("state database", "状态数据库"),
    ("serial port", "串口"),
    ("devices", "设备"),
    ("MQTT broker", "MQTT 服务器"),
    ("camera", "相机"),
    ("platform", "平台"),
    ("clock", "时钟"),
    ("backup", "备份"),
    ("hint", "提示"),
    ("all checks passed", "全部检查通过"),
    ("checks failed", "项检查未通过"),
    ("last backup", "最近备份"),
    ("no backup yet at", "尚无备份:"),
    (
        "old; take one with `parking-bridge backup`",
        "之前;请运行 `parking-bridge backup` 备份",
    ),
    // check.
    ("config is valid", "配置有效"),
    ("errors", "处错误"),
    (
        "Fix each line above (file:line: key: what is wrong), then run check again.",
        "请逐条修改上面的错误(文件:行号: 配置项: 问题),然后再次运行 check。",
    ),
    // platform-test hints.
    ("FAILED", "失败"),
    ("accepted", "已接受"),
];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accept_language_picks_the_heaviest_supported_language() {
        assert_eq!(
            Lang::from_accept_language("zh-CN,zh;q=0.9,en;q=0.8"),
            Some(Lang::Zh)
        );
        assert_eq!(
            Lang::from_accept_language("en-US,en;q=0.9,zh-CN;q=0.8"),
            Some(Lang::En)
        );
        assert_eq!(
            Lang::from_accept_language("fr;q=1, zh-Hans;q=0.5, en;q=0.4"),
            Some(Lang::Zh)
        );
        assert_eq!(
            Lang::from_accept_language("zh;q=0, en;q=0.1"),
            Some(Lang::En)
        );
        assert_eq!(Lang::from_accept_language("de, fr"), None);
        assert_eq!(Lang::from_accept_language(""), None);
    }

    #[test]
    fn cli_language_follows_lc_all_then_lc_messages_then_lang() {
        let env = |pairs: &'static [(&'static str, &'static str)]| {
            move |name: &str| {
                pairs
                    .iter()
                    .find(|(k, _)| *k == name)
                    .map(|(_, v)| v.to_string())
            }
        };
        assert_eq!(Lang::from_vars(env(&[("LANG", "zh_CN.UTF-8")])), Lang::Zh);
        assert_eq!(
            Lang::from_vars(env(&[("LANG", "zh_CN.UTF-8"), ("LC_ALL", "C")])),
            Lang::En
        );
        assert_eq!(
            Lang::from_vars(env(&[("LANG", "en_US.UTF-8"), ("LC_MESSAGES", "zh_CN")])),
            Lang::Zh
        );
        assert_eq!(Lang::from_vars(env(&[("LANG", "")])), Lang::En);
        assert_eq!(Lang::from_vars(env(&[])), Lang::En);
    }

    #[test]
    fn table_translates_each_key_once_and_falls_back_to_english() {
        for (i, (en, zh)) in TABLE.iter().enumerate() {
            assert!(!zh.is_empty() && zh != en, "{en}");
            assert!(
                !TABLE[..i].iter().any(|(other, _)| other == en),
                "{en} listed twice"
            );
        }
        assert_eq!(Lang::Zh.tr("Healthy"), "运行正常");
        assert_eq!(Lang::En.tr("Healthy"), "Healthy");
        assert_eq!(Lang::Zh.tr("not in the table"), "not in the table");
        assert_eq!(Lang::Zh.ago(125), "2 分钟前");
        assert_eq!(Lang::En.ago(3725), "1 h 2 min ago");
    }
}
