//! `[cluster]`: a lot bigger than one PC. One *lot node* keeps the state database,
//! stays, occupancy, order numbers, the uploader and the heartbeat; *lane nodes* run
//! the drivers and lane machines of their lanes and send each passage to the lot node
//! over the site's MQTT broker (see `src/cluster/`).
//!
//! The lot node's config lists every lane of the lot (it decides the stays of all of
//! them) and, in `[[cluster.nodes]]`, which lane node runs which lanes. A lane node's
//! config lists only its own lanes and devices.
//!
//! [`SiteConfig::validate`](super::SiteConfig::validate) checks one file;
//! [`cross_check`] checks the files of a whole lot together (`parking-bridge check
//! lot.toml north.toml …`): one lot node, each lane on one node, lanes known to the lot
//! node and alike on both sides.

use super::devices::MqttConfig;
use super::{Invalid, Located, SiteConfig};
use serde::Deserialize;
use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;

/// What a node does in the lot.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum NodeRole {
    /// The state database, stays, occupancy, order numbers, uploader, heartbeat.
    Lot,
    /// Drivers and lane machines of its lanes; passages go to the lot node.
    Lane,
}

impl NodeRole {
    pub fn as_str(self) -> &'static str {
        match self {
            NodeRole::Lot => "lot",
            NodeRole::Lane => "lane",
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClusterConfig {
    /// This node's name, unique in the lot (letters, digits, `-`, `_`: it is part of
    /// MQTT topics).
    pub node: String,
    pub role: NodeRole,
    /// The site's broker. Absent: the `[mqtt]` section's broker.
    #[serde(default)]
    pub broker: Option<MqttConfig>,
    /// First level of every cluster topic.
    #[serde(default = "default_topic_prefix")]
    pub topic_prefix: String,
    /// Lot node: how long an exit that matches no open stay waits for its entry (still
    /// on its way from another node) before today's unmatched-exit rule applies.
    #[serde(default = "default_late_match_secs")]
    pub late_match_secs: u64,
    /// Lane node: disk its passage queue may take; past it, the oldest queued
    /// snapshots are dropped (passages never are).
    #[serde(default = "default_queue_budget_mb")]
    pub queue_budget_mb: u64,
    /// Lot node: the lane nodes and the lanes each one runs.
    #[serde(default)]
    pub nodes: Vec<ClusterNode>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClusterNode {
    pub name: String,
    pub lanes: Vec<String>,
}

fn default_topic_prefix() -> String {
    "parking-bridge".to_string()
}

fn default_late_match_secs() -> u64 {
    600
}

fn default_queue_budget_mb() -> u64 {
    512
}

fn valid_name(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 64
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
}

impl ClusterConfig {
    /// The broker: `[cluster] broker`, else `[mqtt]`, with a client id of this node's
    /// own (stable across restarts: the broker keeps its QoS 1 session).
    pub fn broker_for(&self, site: &SiteConfig) -> Option<MqttConfig> {
        let mut b = self.broker.clone().or_else(|| site.mqtt.clone())?;
        b.client_id = format!("pb-{}-{}", site.lot.parking_lot_no, self.node);
        Some(b)
    }

    /// The node that runs `lane` (lot node: its own name for lanes no node lists).
    pub fn node_of(&self, lane: &str) -> &str {
        self.nodes
            .iter()
            .find(|n| n.lanes.iter().any(|l| l == lane))
            .map_or(self.node.as_str(), |n| n.name.as_str())
    }
}

/// One file's rules (called from `SiteConfig::validate`).
pub fn validate(site: &SiteConfig, out: &mut Vec<Invalid>) {
    let Some(c) = &site.cluster else { return };
    if !valid_name(&c.node) {
        out.push(Invalid::new(
            "cluster.node",
            "must be 1 to 64 letters, digits, '-' or '_' (it is part of MQTT topics)",
        ));
    }
    if !valid_name(&c.topic_prefix) {
        out.push(Invalid::new(
            "cluster.topic_prefix",
            "must be 1 to 64 letters, digits, '-' or '_'",
        ));
    }
    if c.broker.is_none() && site.mqtt.is_none() {
        out.push(Invalid::new(
            "cluster.broker",
            "needs a broker: set [cluster.broker] (host, port) or the [mqtt] section",
        ));
    }
    match c.role {
        NodeRole::Lane => {
            if !c.nodes.is_empty() {
                out.push(Invalid::new(
                    "cluster.nodes",
                    "only the lot node lists the nodes of the lot (this node has role = \"lane\")",
                ));
            }
            if site.lanes.is_empty() {
                out.push(Invalid::new(
                    "cluster.role",
                    "a lane node needs at least one [[lanes]] of its own",
                ));
            }
        }
        NodeRole::Lot => {
            let known: BTreeSet<&str> = site.lanes.iter().map(|l| l.id.as_str()).collect();
            let mut names = BTreeSet::new();
            let mut owner: BTreeMap<&str, &str> = BTreeMap::new();
            for (i, n) in c.nodes.iter().enumerate() {
                if !valid_name(&n.name) {
                    out.push(Invalid::new(
                        format!("cluster.nodes[{i}].name"),
                        "must be 1 to 64 letters, digits, '-' or '_'",
                    ));
                } else if n.name == c.node {
                    out.push(Invalid::new(
                        format!("cluster.nodes[{i}].name"),
                        format!(
                            "{:?} is this lot node: list only the lane nodes (the lot node runs every lane no node lists)",
                            n.name
                        ),
                    ));
                } else if !names.insert(n.name.as_str()) {
                    out.push(Invalid::new(
                        format!("cluster.nodes[{i}].name"),
                        format!("node {:?} is listed twice", n.name),
                    ));
                }
                if n.lanes.is_empty() {
                    out.push(Invalid::new(
                        format!("cluster.nodes[{i}].lanes"),
                        "a lane node runs at least one lane",
                    ));
                }
                for lane in &n.lanes {
                    if !known.contains(lane.as_str()) {
                        out.push(Invalid::new(
                            format!("cluster.nodes[{i}].lanes"),
                            format!(
                                "lane {lane:?} is unknown to the lot node: add it as [[lanes]] here (the lot node decides the stays of every lane)"
                            ),
                        ));
                    }
                    if let Some(first) = owner.insert(lane.as_str(), n.name.as_str()) {
                        out.push(Invalid::new(
                            format!("cluster.nodes[{i}].lanes"),
                            format!(
                                "lane {lane:?} is configured on two nodes ({first:?} and {:?})",
                                n.name
                            ),
                        ));
                    }
                }
            }
            // A lane a lane node runs has no devices here: its vehicles would be
            // counted twice.
            for (i, d) in site.devices.iter().enumerate() {
                if let Some(node) = owner.get(d.lane.as_str()) {
                    out.push(Invalid::new(
                        format!("devices[{i}].lane"),
                        format!(
                            "lane {:?} is configured on two nodes: node {node:?} runs it (cluster.nodes), so this lot node must not bind devices to it",
                            d.lane
                        ),
                    ));
                }
            }
        }
    }
}

/// One parsed file of a lot: where it is, its text (to locate keys) and its config.
pub struct NodeFile<'a> {
    pub path: PathBuf,
    pub text: &'a str,
    pub site: &'a SiteConfig,
}

/// Checks the configs of every node of one lot together: exactly one lot node, every
/// lane node's lanes known to the lot node and assigned to that node there, no lane on
/// two nodes, one lot number, alike lane definitions.
pub fn cross_check(files: &[NodeFile<'_>]) -> Vec<Located> {
    let mut out = Vec::new();
    let at = |f: &NodeFile<'_>, key: &str, message: String| {
        Located::in_text(&f.path, f.text, Invalid::new(key, message))
    };
    let mut lot_node: Option<&NodeFile<'_>> = None;
    let mut names: BTreeMap<&str, &NodeFile<'_>> = BTreeMap::new();
    for f in files {
        let Some(c) = &f.site.cluster else {
            out.push(at(
                f,
                "cluster",
                "checked with other nodes' files but has no [cluster] section".into(),
            ));
            continue;
        };
        if let Some(first) = names.insert(c.node.as_str(), f) {
            out.push(at(
                f,
                "cluster.node",
                format!(
                    "node name {:?} is already {}'s",
                    c.node,
                    first.path.display()
                ),
            ));
        }
        if c.role == NodeRole::Lot {
            match lot_node {
                Some(first) => out.push(at(
                    f,
                    "cluster.role",
                    format!(
                        "two lot nodes: {} is the lot node already (a lot has exactly one)",
                        first.path.display()
                    ),
                )),
                None => lot_node = Some(f),
            }
        }
    }
    let Some(lot) = lot_node else {
        if let Some(f) = files.first() {
            out.push(at(
                f,
                "cluster.role",
                "no lot node among these files (one needs role = \"lot\")".into(),
            ));
        }
        return out;
    };
    let Some(lot_cluster) = &lot.site.cluster else {
        return out;
    };
    let mut lane_owner: BTreeMap<&str, &str> = BTreeMap::new();
    for f in files.iter().filter(|f| !std::ptr::eq(*f, lot)) {
        let Some(c) = &f.site.cluster else { continue };
        if f.site.lot.parking_lot_no != lot.site.lot.parking_lot_no {
            out.push(at(
                f,
                "lot.parking_lot_no",
                format!(
                    "{:?} differs from the lot node's {:?} ({})",
                    f.site.lot.parking_lot_no,
                    lot.site.lot.parking_lot_no,
                    lot.path.display()
                ),
            ));
        }
        if c.topic_prefix != lot_cluster.topic_prefix {
            out.push(at(
                f,
                "cluster.topic_prefix",
                format!(
                    "{:?} differs from the lot node's {:?}: the nodes would not hear each other",
                    c.topic_prefix, lot_cluster.topic_prefix
                ),
            ));
        }
        for (i, lane) in f.site.lanes.iter().enumerate() {
            let key = format!("lanes[{i}].id");
            if let Some(first) = lane_owner.insert(lane.id.as_str(), c.node.as_str()) {
                out.push(at(
                    f,
                    &key,
                    format!(
                        "lane {:?} is configured on two nodes ({first:?} and {:?})",
                        lane.id, c.node
                    ),
                ));
            }
            let Some(there) = lot.site.lane(&lane.id) else {
                out.push(at(
                    f,
                    &key,
                    format!(
                        "lane {:?} is unknown to the lot node ({}): add it there as [[lanes]] and to its [[cluster.nodes]]",
                        lane.id,
                        lot.path.display()
                    ),
                ));
                continue;
            };
            let assigned = lot_cluster.node_of(&lane.id);
            if assigned != c.node {
                out.push(at(
                    f,
                    &key,
                    format!(
                        "lane {:?} is configured on two nodes: the lot node ({}) has it on node {assigned:?}, not {:?}",
                        lane.id,
                        lot.path.display(),
                        c.node
                    ),
                ));
            }
            if there.direction != lane.direction || there.port_no != lane.port_no {
                out.push(at(
                    f,
                    &key,
                    format!(
                        "lane {:?} differs from the lot node's ({}): direction and port_no must be the same on both",
                        lane.id,
                        lot.path.display()
                    ),
                ));
            }
        }
    }
    // Lanes the lot node assigns to a node whose file was given but which lacks them.
    for (i, n) in lot_cluster.nodes.iter().enumerate() {
        let Some(f) = names.get(n.name.as_str()) else {
            continue;
        };
        for lane in &n.lanes {
            if f.site.lane(lane).is_none() {
                out.push(at(
                    lot,
                    &format!("cluster.nodes[{i}].lanes"),
                    format!(
                        "lane {lane:?} is assigned to node {:?}, but {} does not configure it",
                        n.name,
                        f.path.display()
                    ),
                ));
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{ConfigError, SiteConfig};
    use std::path::Path;

    fn head(lot: &str) -> String {
        format!(
            "[platform]\nbase_url = \"https://host\"\napp_id = \"ae145d83e56cb332\"\napp_secret = \"bb0873ce314c42f7\"\n\n\
             [lot]\nparking_lot_no = \"{lot}\"\ntotal_spaces = 100\n\n[storage]\ndir = \"/tmp/x\"\n\n"
        )
    }

    fn lane(id: &str, dir: &str, port: &str) -> String {
        format!("[[lanes]]\nid = \"{id}\"\ndirection = \"{dir}\"\nport_no = \"{port}\"\n\n")
    }

    fn lot_file() -> String {
        format!(
            "{}{}{}{}{}[cluster]\nnode = \"lot\"\nrole = \"lot\"\nbroker = {{ host = \"127.0.0.1\" }}\n\n\
             [[cluster.nodes]]\nname = \"north\"\nlanes = [\"entry-1\", \"exit-1\"]\n\n\
             [[cluster.nodes]]\nname = \"south\"\nlanes = [\"entry-2\"]\n",
            head("P1"),
            lane("entry-1", "entry", "E1"),
            lane("exit-1", "exit", "X1"),
            lane("entry-2", "entry", "E2"),
            lane("exit-2", "exit", "X2"),
        )
    }

    fn lane_file(node: &str, lanes: &[(&str, &str, &str)]) -> String {
        let mut t = head("P1");
        for (id, dir, port) in lanes {
            t.push_str(&lane(id, dir, port));
        }
        t.push_str(&format!(
            "[cluster]\nnode = \"{node}\"\nrole = \"lane\"\nbroker = {{ host = \"127.0.0.1\" }}\n"
        ));
        t
    }

    /// The lane node `north` as the lot node assigns it.
    fn north_file() -> String {
        lane_file(
            "north",
            &[("entry-1", "entry", "E1"), ("exit-1", "exit", "X1")],
        )
    }

    /// The error at `key` among `errs` (only those of `file`, when given).
    fn error_at<'a>(errs: &'a [Located], file: Option<&str>, key: &str) -> &'a Located {
        errs.iter()
            .find(|e| e.key == key && file.is_none_or(|f| e.file == Path::new(f)))
            .unwrap_or_else(|| panic!("no error at {key}: {errs:?}"))
    }

    fn errors(text: &str) -> Vec<Located> {
        match SiteConfig::from_toml(text, Path::new("/etc/lot.toml")) {
            Err(ConfigError::Invalid(v)) => v,
            other => panic!("expected invalid, got {other:?}"),
        }
    }

    fn line_of(text: &str, needle: &str) -> Option<usize> {
        Some(crate::config::line_of_offset(text, text.find(needle)?))
    }

    #[test]
    fn a_consistent_lot_node_and_lane_node_load() {
        let c = SiteConfig::from_toml(&lot_file(), Path::new("lot.toml")).unwrap();
        let cl = c.cluster.as_ref().unwrap();
        assert_eq!(cl.role, NodeRole::Lot);
        assert_eq!(cl.late_match_secs, 600);
        assert_eq!(cl.node_of("exit-1"), "north");
        assert_eq!(cl.node_of("exit-2"), "lot");
        assert_eq!(cl.broker_for(&c).unwrap().client_id, "pb-P1-lot");
        SiteConfig::from_toml(
            &lane_file("north", &[("entry-1", "entry", "E1")]),
            Path::new("north.toml"),
        )
        .unwrap();
    }

    #[test]
    fn a_lane_unknown_to_the_lot_node_names_file_line_and_key() {
        let text = lot_file().replace("[\"entry-2\"]", "[\"entry-9\"]");
        let e = &errors(&text)[0];
        assert_eq!(e.key, "cluster.nodes[1].lanes");
        assert_eq!(e.line, line_of(&text, "lanes = [\"entry-9\"]"));
        assert!(e.message.contains("unknown to the lot node"), "{e}");
        assert!(e.to_string().starts_with("/etc/lot.toml:"), "{e}");
    }

    #[test]
    fn a_lane_on_two_nodes_is_refused_in_one_file() {
        let text = lot_file().replace("[\"entry-2\"]", "[\"entry-2\", \"exit-1\"]");
        let e = &errors(&text)[0];
        assert_eq!(e.key, "cluster.nodes[1].lanes");
        assert!(e.message.contains("configured on two nodes"), "{e}");
        // Devices on the lot node for a lane a lane node runs.
        let text = format!(
            "{}\n[[devices]]\nname = \"cam\"\nprofile = \"vzenith-mqtt\"\nlane = \"exit-1\"\ncamera_id = \"C1\"\n\n[mqtt]\nhost = \"127.0.0.1\"\n",
            lot_file()
        );
        let errs = errors(&text);
        let e = error_at(&errs, None, "devices[0].lane");
        assert!(e.message.contains("two nodes"), "{e}");
        assert_eq!(e.line, line_of(&text, "lane = \"exit-1\""));
    }

    #[test]
    fn a_lane_node_listing_nodes_or_without_broker_is_refused() {
        let text = lane_file("north", &[("entry-1", "entry", "E1")])
            .replace("broker = { host = \"127.0.0.1\" }\n", "");
        let e = &errors(&text)[0];
        assert_eq!(e.key, "cluster.broker");
        let text = format!(
            "{}\n[[cluster.nodes]]\nname = \"x\"\nlanes = [\"entry-1\"]\n",
            lane_file("north", &[("entry-1", "entry", "E1")])
        );
        assert_eq!(errors(&text)[0].key, "cluster.nodes");
        let text = lane_file("no/rth", &[("entry-1", "entry", "E1")]);
        assert_eq!(errors(&text)[0].key, "cluster.node");
    }

    fn cross(files: &[(&str, String)]) -> Vec<Located> {
        let sites: Vec<SiteConfig> = files
            .iter()
            .map(|(p, t)| SiteConfig::from_toml(t, Path::new(p)).unwrap())
            .collect();
        let nodes: Vec<NodeFile<'_>> = files
            .iter()
            .zip(&sites)
            .map(|((p, t), s)| NodeFile {
                path: PathBuf::from(p),
                text: t,
                site: s,
            })
            .collect();
        cross_check(&nodes)
    }

    #[test]
    fn a_whole_consistent_lot_passes_the_cross_check() {
        let errs = cross(&[
            ("lot.toml", lot_file()),
            ("north.toml", north_file()),
            (
                "south.toml",
                lane_file("south", &[("entry-2", "entry", "E2")]),
            ),
        ]);
        assert!(errs.is_empty(), "{errs:?}");
    }

    #[test]
    fn two_lot_nodes_are_refused_at_the_second_ones_role() {
        let second = lot_file().replace("node = \"lot\"", "node = \"lot2\"");
        let errs = cross(&[("a.toml", lot_file()), ("b.toml", second.clone())]);
        let e = error_at(&errs, None, "cluster.role");
        assert_eq!(e.file, PathBuf::from("b.toml"));
        assert_eq!(e.line, line_of(&second, "role = \"lot\""));
        assert!(e.message.contains("two lot nodes"), "{e}");
    }

    #[test]
    fn a_lane_on_two_lane_nodes_or_unknown_to_the_lot_node_is_refused_at_its_lane() {
        let south = lane_file(
            "south",
            &[("entry-2", "entry", "E2"), ("entry-1", "entry", "E1")],
        );
        let errs = cross(&[
            ("lot.toml", lot_file()),
            ("north.toml", north_file()),
            ("south.toml", south.clone()),
        ]);
        let e = error_at(&errs, Some("south.toml"), "lanes[1].id");
        assert!(e.message.contains("two nodes"), "{e}");
        assert_eq!(e.line, line_of(&south, "id = \"entry-1\""));

        let south = lane_file(
            "south",
            &[("entry-2", "entry", "E2"), ("entry-7", "entry", "E7")],
        );
        let errs = cross(&[("lot.toml", lot_file()), ("south.toml", south.clone())]);
        let e = error_at(&errs, None, "lanes[1].id");
        assert!(
            e.message.contains("unknown to the lot node (lot.toml)"),
            "{e}"
        );
        assert_eq!(e.line, line_of(&south, "id = \"entry-7\""));

        // A lane definition that differs between the nodes.
        let south = lane_file("south", &[("entry-2", "entry", "E9")]);
        let errs = cross(&[("lot.toml", lot_file()), ("south.toml", south)]);
        assert!(
            errs.iter()
                .any(|e| e.message.contains("direction and port_no")),
            "{errs:?}"
        );
    }
}
