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
            Lang::Zh => chinese(english).unwrap_or(english),
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

impl Lang {
    /// A sentence with figures or names in it, through [`TEMPLATES`]: an English
    /// template whose `{}` holes match any text, and its Chinese form with the same
    /// holes in the same order. Untranslated text comes back as it is.
    pub fn tr_text(self, english: &str) -> String {
        if self == Lang::En {
            return english.to_string();
        }
        if let Some(zh) = chinese(english) {
            return zh.to_string();
        }
        for (en, zh) in TEMPLATES {
            if let Some(holes) = match_template(en, english) {
                let mut out = String::new();
                let mut holes = holes.into_iter();
                let mut parts = zh.split("{}").peekable();
                while let Some(part) = parts.next() {
                    out.push_str(part);
                    if parts.peek().is_some() {
                        out.push_str(holes.next().unwrap_or_default());
                    }
                }
                return out;
            }
        }
        english.to_string()
    }
}

/// The table's Chinese for an English text, when it has one.
fn chinese(english: &str) -> Option<&'static str> {
    TABLE
        .iter()
        .find(|(en, _)| *en == english)
        .map(|(_, zh)| *zh)
}

/// The texts filling the `{}` holes of `template` in `text`, if `text` has its shape.
/// Holes take the shortest text that lets the rest match (left to right); the last
/// hole takes the rest.
fn match_template<'a>(template: &str, text: &'a str) -> Option<Vec<&'a str>> {
    let parts: Vec<&str> = template.split("{}").collect();
    let first = parts.first()?;
    let mut rest = text.strip_prefix(first)?;
    let mut holes = Vec::new();
    for (i, part) in parts.iter().enumerate().skip(1) {
        let last = i == parts.len() - 1;
        if last {
            let hole = rest.strip_suffix(part)?;
            holes.push(hole);
            rest = "";
        } else {
            if part.is_empty() {
                return None;
            }
            let at = rest.find(part)?;
            holes.push(&rest[..at]);
            rest = &rest[at + part.len()..];
        }
    }
    (parts.len() > 1 || rest.is_empty()).then_some(holes)
}

/// Sentences with holes, English → Simplified Chinese (doctor, check, platform-test).
const TEMPLATES: &[(&str, &str)] = &[
    // doctor: what was checked.
    ("serial port {} (bus {}) opens", "串口 {}(总线 {})可以打开"),
    (
        "modbus device {} (slave {}) answers",
        "Modbus 设备 {}(从站 {})有应答",
    ),
    ("MQTT broker {} reachable", "MQTT 服务器 {} 可连接"),
    ("camera {} seen", "相机 {} 有数据"),
    ("camera {} pushes", "相机 {} 有推送"),
    ("subscribe {}", "订阅 {}"),
    ("all {} checks passed", "全部 {} 项检查通过"),
    ("{} of {} checks failed", "{} 项未通过(共 {} 项)"),
    ("{}: ok", "{}:配置有效"),
    // doctor: hints.
    (
        "fix the lines above; `parking-bridge check --config {}` repeats them",
        "请修改上面列出的问题;`parking-bridge check --config {}` 会再次列出",
    ),
    ("put the 16-character secret in {}", "把 16 位密钥写入 {}"),
    (
        "create it: install -d -o parking-bridge -g parking-bridge {}",
        "请创建该目录:install -d -o parking-bridge -g parking-bridge {}",
    ),
    (
        "free space on that disk (at least {} MB)",
        "请清理该磁盘空间(至少 {} MB)",
    ),
    (
        "parking-bridge backup --config /etc/parking-bridge/config.toml --to {} (the shipped parking-bridge-backup.timer runs it daily)",
        "运行 parking-bridge backup --config /etc/parking-bridge/config.toml --to {}(随包提供的 parking-bridge-backup.timer 每天自动运行)",
    ),
    ("no backup yet at {}", "{} 尚无备份"),
    ("{}: {} h {} min old", "{}:已有 {} 小时 {} 分钟"),
    // check: the commonest messages of config errors (the exact English line stays).
    ("must not be empty", "不能为空"),
    ("must be at least {}", "必须至少为 {}"),
    ("must be between {} and {} fen", "必须在 {} 到 {} 分之间"),
    ("must be between {} and {}", "必须在 {} 到 {} 之间"),
    ("must not be negative", "不能为负数"),
    ("must be {} to {} characters", "必须为 {} 到 {} 个字符"),
    (
        "unknown field `{}`, expected one of {}",
        "未知配置项 `{}`,可用的有:{}",
    ),
    (
        "unknown field `{}`, there are no fields",
        "未知配置项 `{}`,此处没有配置项",
    ),
    ("missing field `{}`", "缺少必填配置项 `{}`"),
    (
        "invalid type: {}, expected {}",
        "类型错误:给出的是 {},应为 {}",
    ),
    ("unknown variant `{}`, expected {}", "无效取值 `{}`,应为 {}"),
    ("duplicate key `{}`", "重复的配置项 `{}`"),
    (
        "expected an address like \"127.0.0.1:9108\"",
        "应为 \"127.0.0.1:9108\" 这样的地址",
    ),
    (
        "a non-loopback address needs `token` set in [http] (the status page shows plates and snapshots)",
        "非本机地址需要在 [http] 中设置 `token`(状态页会显示车牌和抓拍)",
    ),
    (
        "must be a file outside the storage dir (ideally on another disk)",
        "必须是存储目录之外的文件(最好在另一块磁盘上)",
    ),
    // Status page: the reasons of a degraded bridge (also /healthz, which stays English).
    (
        "platform unreachable: no successful answer for {} s, last result {}",
        "平台无法连接:已 {} 秒没有成功应答,最近结果 {}",
    ),
    (
        "platform unreachable: no successful answer since start ({} s), last result {}",
        "平台无法连接:启动以来没有成功应答({} 秒),最近结果 {}",
    ),
    ("lot: device {} down for {} s", "车场:设备 {} 已离线 {} 秒"),
    (
        "lane {}: device {} down for {} s",
        "车道 {}:设备 {} 已离线 {} 秒",
    ),
    (
        "storage budget {}% used ({} of {} bytes)",
        "存储配额已用 {}%({} / {} 字节)",
    ),
    (
        "disk holding the storage dir {}% full",
        "存储目录所在磁盘已用 {}%",
    ),
    (
        "wall clock jumped by {} ms recently",
        "系统时钟最近跳变了 {} 毫秒",
    ),
    ("system clock not synchronised (NTP)", "系统时钟未同步(NTP)"),
    (
        "{} report(s) held after repeated refusals by the platform (parking-bridge outbox held)",
        "{} 条上报多次被平台拒绝,已暂停待人工处理(parking-bridge outbox held)",
    ),
    ("state database unusable: {}", "状态数据库无法使用:{}"),
    // platform-test hints.
    (
        "lot not registered: the platform does not know lot.parking_lot_no {}; check the value or ask the platform operator to register the lot",
        "车场未注册:平台不认识 lot.parking_lot_no {};请核对该值,或请平台方登记本车场",
    ),
    (
        "wrong app_id: the platform does not accept platform.app_id {}; copy it again from the platform's registration",
        "app_id 错误:平台不接受 platform.app_id {};请从平台的登记信息中重新复制",
    ),
    (
        "the platform answered but did not accept ({}); it may be busy or down, try again in a minute",
        "平台有应答但未接受({});平台可能繁忙或故障,请一分钟后重试",
    ),
];

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
    ("faulty", "故障"),
    ("Lot", "车场"),
    ("Camera push", "相机推送"),
    ("listening on", "监听地址"),
    ("vendor", "厂商"),
    ("address to set on the camera", "相机上应填写的推送地址"),
    ("bound to", "绑定方式"),
    ("reads", "识别数"),
    ("late", "离线补传"),
    ("resends dropped", "重复推送已去除"),
    ("pictures dropped", "超限图片已丢弃"),
    ("refused since start", "启动以来拒绝的推送"),
    ("camera push listener", "相机推送监听"),
    (
        "set that address on the camera (README: the push URL per vendor; BRIDGE is this PC's address), check its `source`/`token` against the device entry, then drive a car past or use its test trigger with the service running",
        "请在相机上填写该地址(README 列出各厂商的推送地址;BRIDGE 为本机地址),核对设备配置中的 `source`/`token`,然后在服务运行时让车辆驶过或使用相机的测试触发",
    ),
    (
        "cameras push over the network: set [camera_push] listen to 0.0.0.0:PORT (or this PC's address on the cameras' network)",
        "相机通过网络推送:请把 [camera_push] listen 设为 0.0.0.0:端口(或本机在相机网络中的地址)",
    ),
    (
        "use an address of this PC (or 0.0.0.0) and a free port above 1024",
        "请使用本机的地址(或 0.0.0.0)和 1024 以上的空闲端口",
    ),
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
    ("held after refusals", "多次被拒,待人工处理"),
    ("Failing", "无法工作"),
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
    // doctor labels.
    ("config valid", "配置文件有效"),
    ("app secret present and private", "应用密钥存在且权限私有"),
    (
        "storage dir writable with free space",
        "存储目录可写且空间充足",
    ),
    ("device profiles found", "找到设备配置档"),
    (
        "platform reachable and heartbeat accepted",
        "平台可连接且心跳被接受",
    ),
    ("system clock synchronised", "系统时钟已同步"),
    ("timezone as configured", "时区与配置一致"),
    (
        "recent backup of the state database",
        "状态数据库有近期备份",
    ),
    // doctor hints.
    ("check the path", "请检查路径"),
    ("no such device", "没有这个设备"),
    (
        "check the USB/RS-485 adapter and the udev rule (/etc/udev/rules.d/99-parking-bridge.rules); `parking-bridge ports` lists adapters",
        "请检查 USB/RS-485 转换器和 udev 规则(/etc/udev/rules.d/99-parking-bridge.rules);`parking-bridge ports` 可列出转换器",
    ),
    (
        "check the device's IP address, port and unit id, and the network",
        "请检查设备的 IP 地址、端口、单元号以及网络",
    ),
    (
        "check wiring (A/B swapped?), termination, baud rate/parity and the slave address set on the device",
        "请检查接线(A/B 是否接反)、终端电阻、波特率/校验位以及设备上设置的从站地址",
    ),
    (
        "the device answers but not at that address: check its profile",
        "设备有应答但该地址无效:请检查设备配置档",
    ),
    ("check the topic in the profile", "请检查配置档中的主题"),
    (
        "check the camera's MQTT settings (broker address, topic) and that it is powered; drive a car past or use its test trigger",
        "请检查相机的 MQTT 设置(服务器地址、主题)和电源;让车辆驶过或使用相机的测试触发",
    ),
    (
        "fix the app secret first (line above)",
        "请先修正应用密钥(见上一行)",
    ),
    (
        "check the network route to the platform",
        "请检查到平台的网络路由",
    ),
    (
        "the platform rejects this bridge's settings: check app_id, the secret and parking_lot_no with the platform operator (`parking-bridge platform-test` shows more)",
        "平台拒绝本桥接程序的设置:请与平台方核对 app_id、密钥和 parking_lot_no(`parking-bridge platform-test` 显示更多信息)",
    ),
    (
        "the platform answered but did not accept the heartbeat; retry, or ask the platform operator",
        "平台有应答但未接受心跳;请重试或咨询平台方",
    ),
    (
        "timedatectl set-timezone Asia/Shanghai",
        "运行 timedatectl set-timezone Asia/Shanghai",
    ),
    // platform-test hints.
    ("FAILED", "失败"),
    ("accepted", "已接受"),
    (
        "wrong key: the platform could not decrypt the request; check the 16-character app secret (platform.app_secret_file, platform.app_secret or PARKING_BRIDGE_APP_SECRET)",
        "密钥错误:平台无法解密请求;请检查 16 位应用密钥(platform.app_secret_file、platform.app_secret 或 PARKING_BRIDGE_APP_SECRET)",
    ),
    (
        "wrong URL: nothing answers at this path; check platform.base_url (and platform.paths)",
        "地址错误:该路径无应答;请检查 platform.base_url(以及 platform.paths)",
    ),
    (
        "the platform refused a field of the heartbeat (see its message above); check lot.parking_lot_no",
        "平台拒绝了心跳中的某个字段(见上方消息);请检查 lot.parking_lot_no",
    ),
    (
        "the platform answered unexpectedly; see its message above",
        "平台应答异常;请查看上方消息",
    ),
    (
        "the request breaks the platform's rules (see the field named above); fix the config or report data",
        "请求不符合平台规则(见上方指出的字段);请修改配置或上报数据",
    ),
    (
        "check platform.ca_file (a PEM file) and platform.proxy (a URL)",
        "请检查 platform.ca_file(PEM 文件)和 platform.proxy(URL)",
    ),
    (
        "DNS: the platform's host name could not be resolved; check platform.base_url and this PC's DNS server",
        "DNS:无法解析平台主机名;请检查 platform.base_url 和本机的 DNS 服务器",
    ),
    (
        "refused: the host answered but nothing listens on that port; check the port in platform.base_url, or the platform is down",
        "连接被拒绝:主机有应答但该端口无服务;请检查 platform.base_url 中的端口,或平台已停机",
    ),
    (
        "timeout: no answer in time; check the network route/firewall to the platform, the proxy, or the platform is down",
        "超时:未及时应答;请检查到平台的网络路由/防火墙、代理,或平台已停机",
    ),
    (
        "TLS: the platform's certificate is not trusted or the handshake failed; check https vs http in base_url, this PC's clock, or set platform.ca_file",
        "TLS:平台证书不受信任或握手失败;请检查 base_url 是 https 还是 http、本机时钟,或设置 platform.ca_file",
    ),
    (
        "network: cannot reach the platform (no route / unreachable); check the network cable, gateway and firewall",
        "网络:无法连接平台(无路由/不可达);请检查网线、网关和防火墙",
    ),
    (
        "the connection dropped before the platform answered; usually transient, it will be retried",
        "平台应答前连接中断;通常是暂时的,会自动重试",
    ),
    (
        "OK: the platform accepted the heartbeat",
        "成功:平台已接受心跳",
    ),
];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accept_language_picks_the_heaviest_supported_language() {
        for (header, want) in [
            ("zh-CN,zh;q=0.9,en;q=0.8", Some(Lang::Zh)),
            ("en-US,en;q=0.9,zh-CN;q=0.8", Some(Lang::En)),
            ("fr;q=1, zh-Hans;q=0.5, en;q=0.4", Some(Lang::Zh)),
            ("zh;q=0, en;q=0.1", Some(Lang::En)),
            ("de, fr", None),
            ("", None),
        ] {
            assert_eq!(Lang::from_accept_language(header), want, "{header:?}");
        }
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

    #[test]
    fn templates_carry_names_and_figures_into_the_chinese_sentence() {
        assert_eq!(
            Lang::Zh.tr_text("serial port /dev/parking/bus1 (bus rs485-1) opens"),
            "串口 /dev/parking/bus1(总线 rs485-1)可以打开"
        );
        assert_eq!(
            Lang::Zh.tr_text("3 of 12 checks failed"),
            "3 项未通过(共 12 项)"
        );
        assert_eq!(
            Lang::Zh.tr_text("lot not registered: the platform does not know lot.parking_lot_no \"P1\"; check the value or ask the platform operator to register the lot"),
            "车场未注册:平台不认识 lot.parking_lot_no \"P1\";请核对该值,或请平台方登记本车场"
        );
        assert_eq!(Lang::Zh.tr_text("check the path"), "请检查路径");
        assert_eq!(Lang::Zh.tr_text("something new"), "something new");
        assert_eq!(
            Lang::En.tr_text("serial port x (bus y) opens"),
            "serial port x (bus y) opens"
        );
        for (en, zh) in TEMPLATES {
            assert_eq!(en.matches("{}").count(), zh.matches("{}").count(), "{en}");
        }
    }
}
