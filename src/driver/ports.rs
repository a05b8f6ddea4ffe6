//! `parking-bridge ports`: lists serial ports with their stable names and the udev
//! rule line that pins each USB adapter to `/dev/parking/<name>`.
//!
//! Reads sysfs and `/dev/serial/by-{id,path}` directly (no libudev needed); the roots
//! are parameters so tests can use a fake tree.

use std::fs;
use std::path::{Path, PathBuf};

#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct PortInfo {
    /// `/dev/ttyUSB0`.
    pub device: PathBuf,
    pub by_id: Vec<PathBuf>,
    pub by_path: Vec<PathBuf>,
    /// USB attributes, when the port is a USB adapter.
    pub vendor_id: Option<String>,
    pub product_id: Option<String>,
    pub serial: Option<String>,
    pub product: Option<String>,
    pub manufacturer: Option<String>,
}

impl PortInfo {
    /// The udev rule line that names this adapter `/dev/parking/<name>`; `None` for
    /// non-USB ports (pin those by path in the rules file instead).
    pub fn rule_line(&self, name: &str) -> Option<String> {
        let (v, p) = (self.vendor_id.as_ref()?, self.product_id.as_ref()?);
        let serial = match &self.serial {
            Some(s) => format!(", ATTRS{{serial}}==\"{s}\""),
            None => String::new(),
        };
        Some(format!(
            "SUBSYSTEM==\"tty\", ATTRS{{idVendor}}==\"{v}\", ATTRS{{idProduct}}==\"{p}\"{serial}, SYMLINK+=\"parking/{name}\", MODE=\"0660\", GROUP=\"dialout\""
        ))
    }
}

fn read_attr(dir: &Path, name: &str) -> Option<String> {
    let v = fs::read_to_string(dir.join(name)).ok()?;
    let v = v.trim();
    (!v.is_empty()).then(|| v.to_string())
}

/// Symlinks in `dir` that resolve to `target`.
fn links_to(dir: &Path, target: &Path) -> Vec<PathBuf> {
    let Ok(entries) = fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut out: Vec<PathBuf> = entries
        .filter_map(|e| e.ok())
        .map(|e| e.path())
        .filter(|p| fs::canonicalize(p).ok().as_deref() == Some(target))
        .collect();
    out.sort();
    out
}

/// Lists serial ports: every USB serial adapter, and any other tty that has a
/// `/dev/serial/by-*` name. `sys` is normally `/sys`, `dev` `/dev`.
pub fn list_ports(sys: &Path, dev: &Path) -> Vec<PortInfo> {
    let Ok(entries) = fs::read_dir(sys.join("class/tty")) else {
        return Vec::new();
    };
    let mut names: Vec<String> = entries
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .collect();
    names.sort();
    let mut out = Vec::new();
    for name in names {
        let class_dir = sys.join("class/tty").join(&name);
        let Ok(device_dir) = fs::canonicalize(class_dir.join("device")) else {
            continue;
        };
        let device = dev.join(&name);
        let target = fs::canonicalize(&device).unwrap_or_else(|_| device.clone());
        let by_id = links_to(&dev.join("serial/by-id"), &target);
        let by_path = links_to(&dev.join("serial/by-path"), &target);
        // The USB device is the nearest ancestor with an idVendor attribute.
        let usb = device_dir
            .ancestors()
            .take(6)
            .find(|d| d.join("idVendor").exists())
            .map(Path::to_path_buf);
        if usb.is_none() && by_id.is_empty() && by_path.is_empty() {
            continue;
        }
        let attr = |n: &str| usb.as_deref().and_then(|u| read_attr(u, n));
        out.push(PortInfo {
            device,
            by_id,
            by_path,
            vendor_id: attr("idVendor"),
            product_id: attr("idProduct"),
            serial: attr("serial"),
            product: attr("product"),
            manufacturer: attr("manufacturer"),
        });
    }
    out
}

/// The text `parking-bridge ports` prints.
pub fn report(ports: &[PortInfo]) -> String {
    if ports.is_empty() {
        return "no serial ports found (is the USB-RS485 adapter plugged in?)\n".to_string();
    }
    let mut s = String::new();
    for (i, p) in ports.iter().enumerate() {
        s.push_str(&format!("{}\n", p.device.display()));
        if let (Some(v), Some(pr)) = (&p.vendor_id, &p.product_id) {
            let desc = [p.manufacturer.as_deref(), p.product.as_deref()]
                .into_iter()
                .flatten()
                .collect::<Vec<_>>()
                .join(" ");
            s.push_str(&format!("  usb       {v}:{pr} {desc}\n"));
            s.push_str(&format!(
                "  serial    {}\n",
                p.serial
                    .as_deref()
                    .unwrap_or("(none: adapters of this model are told apart by by-path only)")
            ));
        }
        for l in &p.by_id {
            s.push_str(&format!("  by-id     {}\n", l.display()));
        }
        for l in &p.by_path {
            s.push_str(&format!("  by-path   {}\n", l.display()));
        }
        match p.rule_line(&format!("bus{}", i + 1)) {
            Some(rule) => s.push_str(&format!("  udev rule (edit the name, add to /etc/udev/rules.d/99-parking-bridge.rules):\n    {rule}\n")),
            None => s.push_str("  not USB: use its by-path name in [[buses]] port\n"),
        }
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;

    #[test]
    fn usb_adapter_is_listed_with_stable_names_and_rule() {
        let root = tempfile::tempdir().unwrap();
        let sys = root.path().join("sys");
        let dev = root.path().join("dev");
        let usb = sys.join("devices/pci0000:00/usb1/1-1");
        let iface = usb.join("1-1:1.0/ttyUSB0");
        fs::create_dir_all(&iface).unwrap();
        for (k, v) in [
            ("idVendor", "1a86"),
            ("idProduct", "7523"),
            ("serial", "A1B2"),
            ("product", "USB Serial"),
        ] {
            fs::write(usb.join(k), format!("{v}\n")).unwrap();
        }
        fs::create_dir_all(sys.join("class/tty/ttyUSB0")).unwrap();
        symlink(&iface, sys.join("class/tty/ttyUSB0/device")).unwrap();
        // A virtual console without a device link is skipped.
        fs::create_dir_all(sys.join("class/tty/tty0")).unwrap();
        fs::create_dir_all(dev.join("serial/by-id")).unwrap();
        fs::create_dir_all(dev.join("serial/by-path")).unwrap();
        fs::write(dev.join("ttyUSB0"), "").unwrap();
        symlink(
            dev.join("ttyUSB0"),
            dev.join("serial/by-id/usb-1a86_USB_Serial_A1B2-if00-port0"),
        )
        .unwrap();
        symlink(
            dev.join("ttyUSB0"),
            dev.join("serial/by-path/pci-0000:00:14.0-usb-0:1:1.0-port0"),
        )
        .unwrap();

        let ports = list_ports(&sys, &dev);
        assert_eq!(ports.len(), 1, "{ports:?}");
        let p = &ports[0];
        assert_eq!(p.vendor_id.as_deref(), Some("1a86"));
        assert_eq!(p.serial.as_deref(), Some("A1B2"));
        assert_eq!(p.by_id.len(), 1);
        assert_eq!(p.by_path.len(), 1);
        assert_eq!(
            p.rule_line("bus1").unwrap(),
            "SUBSYSTEM==\"tty\", ATTRS{idVendor}==\"1a86\", ATTRS{idProduct}==\"7523\", ATTRS{serial}==\"A1B2\", SYMLINK+=\"parking/bus1\", MODE=\"0660\", GROUP=\"dialout\""
        );
        let text = report(&ports);
        assert!(
            text.contains("by-id     ") && text.contains("SYMLINK+=\"parking/bus1\""),
            "{text}"
        );
    }

    #[test]
    fn no_ports_says_so() {
        let root = tempfile::tempdir().unwrap();
        assert!(list_ports(root.path(), root.path()).is_empty());
        assert!(report(&[]).contains("no serial ports"));
    }
}
