//! The Pod Security Standards checks, as Pod Security Admission defines and versions them
//! (`k8s.io/pod-security-admission/policy/check_*.go`, read as of Kubernetes 1.37).
//!
//! Each check has revisions, each starting at a minimum policy version; a policy version runs
//! the newest revision at or below it, and a check with no revision at or below it does not
//! run. At `restricted`, a restricted check *overrides* (replaces) a baseline check from the
//! versions where the restricted check has a revision.

use std::collections::BTreeSet;
use std::ops::RangeInclusive;

use serde_json::Value;

use crate::workload::{ContainerRef, containers};
use crate::{Level, Target, Version, Violation};

/// The newest policy version with a check revision (`v1.37`, the sysctls safe list); `latest`
/// and every newer `v1.N` evaluate as this.
pub const LATEST_MINOR: u32 = 37;

/// Evaluation options beyond upstream's defaults.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Options {
    /// Host ports allowed by `hostPorts` (the standard's "known list", which the built-in
    /// admission does not support: empty, the upstream behaviour, forbids every host port).
    pub allowed_host_ports: Vec<RangeInclusive<u16>>,
}

/// A check, for listing and documentation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CheckInfo {
    /// Upstream's id.
    pub id: &'static str,
    /// The level it belongs to.
    pub level: Level,
    /// The minor versions (`v1.N`) where a revision starts, ascending.
    pub revisions: &'static [u32],
    /// The baseline checks it replaces at `restricted` (from its first revision on).
    pub overrides: &'static [&'static str],
    /// What it checks, one line.
    pub summary: &'static str,
}

impl CheckInfo {
    /// The revision that runs at `version` (its starting minor), or `None` if the check does
    /// not exist yet at that version.
    pub fn revision_at(&self, version: Version) -> Option<u32> {
        let minor = version.effective_minor();
        self.revisions.iter().rev().copied().find(|&r| r <= minor)
    }
}

type CheckFn = fn(u32, &Pod<'_>) -> Option<Finding>;

struct Check {
    info: CheckInfo,
    run: CheckFn,
}

macro_rules! check {
    ($id:literal, $level:ident, [$($rev:literal),*], [$($ov:literal),*], $summary:literal, $run:expr) => {
        Check {
            info: CheckInfo {
                id: $id,
                level: Level::$level,
                revisions: &[$($rev),*],
                overrides: &[$($ov),*],
                summary: $summary,
            },
            run: $run,
        }
    };
}

/// Upstream's check list, in its order.
static CHECKS: &[Check] = &[
    check!(
        "hostNamespaces",
        Baseline,
        [0],
        [],
        "hostNetwork, hostPID, hostIPC unset or false",
        host_namespaces
    ),
    check!(
        "privileged",
        Baseline,
        [0],
        [],
        "securityContext.privileged unset or false",
        privileged
    ),
    check!(
        "capabilities_baseline",
        Baseline,
        [0],
        [],
        "capabilities.add only from the default set",
        capabilities_baseline
    ),
    check!(
        "hostPathVolumes",
        Baseline,
        [0],
        [],
        "no hostPath volumes",
        host_path_volumes
    ),
    check!(
        "hostPorts",
        Baseline,
        [0],
        [],
        "ports[*].hostPort unset or 0",
        host_ports
    ),
    check!(
        "appArmorProfile",
        Baseline,
        [0],
        [],
        "AppArmor field and annotations: RuntimeDefault or Localhost",
        app_armor
    ),
    check!(
        "seLinuxOptions",
        Baseline,
        [0, 31],
        [],
        "seLinuxOptions: allowed types, no user or role",
        se_linux_options
    ),
    check!(
        "procMount",
        Baseline,
        [0, 35],
        [],
        "procMount unset or Default (v1.35: any for hostUsers=false)",
        proc_mount_baseline
    ),
    check!(
        "seccompProfile_baseline",
        Baseline,
        [0, 19],
        [],
        "seccomp RuntimeDefault or Localhost when set (annotations before v1.19, fields from v1.19)",
        seccomp_baseline
    ),
    check!(
        "sysctls",
        Baseline,
        [0, 27, 29, 32, 37],
        [],
        "only safe sysctls",
        sysctls
    ),
    check!(
        "windowsHostProcess",
        Baseline,
        [0],
        [],
        "windowsOptions.hostProcess unset or false",
        windows_host_process
    ),
    check!(
        "hostProbesAndHostLifecycle",
        Baseline,
        [34],
        [],
        "probes and lifecycle handlers set no host",
        host_probes
    ),
    check!(
        "restrictedVolumes",
        Restricted,
        [0],
        ["hostPathVolumes"],
        "only configMap, csi, downwardAPI, emptyDir, ephemeral, image, persistentVolumeClaim, projected, secret volumes",
        restricted_volumes
    ),
    check!(
        "allowPrivilegeEscalation",
        Restricted,
        [8, 25],
        [],
        "allowPrivilegeEscalation=false (v1.25: Windows pods exempt)",
        allow_privilege_escalation
    ),
    check!(
        "runAsNonRoot",
        Restricted,
        [0, 35],
        [],
        "runAsNonRoot=true on the pod or every container (v1.35: hostUsers=false exempt)",
        run_as_non_root
    ),
    check!(
        "runAsUser",
        Restricted,
        [23, 35],
        [],
        "runAsUser not 0 (v1.35: hostUsers=false exempt)",
        run_as_user
    ),
    check!(
        "seccompProfile_restricted",
        Restricted,
        [19, 25],
        ["seccompProfile_baseline"],
        "seccomp RuntimeDefault or Localhost on the pod or every container (v1.25: Windows pods exempt)",
        seccomp_restricted
    ),
    check!(
        "capabilities_restricted",
        Restricted,
        [22, 25],
        ["capabilities_baseline"],
        "drop ALL, add only NET_BIND_SERVICE (v1.25: Windows pods exempt)",
        capabilities_restricted
    ),
    check!(
        "procMount_restricted",
        Restricted,
        [35],
        ["procMount"],
        "procMount unset or Default, user namespaces or not",
        proc_mount_restricted
    ),
];

/// Every check, in upstream's order.
pub fn checks() -> impl Iterator<Item = &'static CheckInfo> {
    CHECKS.iter().map(|c| &c.info)
}

/// [`crate::evaluate`] with explicit [`Options`].
pub fn evaluate_with(
    options: &Options,
    level: Level,
    version: Version,
    pod_metadata: &Value,
    pod_spec: &Value,
) -> Vec<Violation> {
    if level == Level::Privileged {
        return Vec::new();
    }
    let pod = Pod {
        meta: pod_metadata,
        spec: pod_spec,
        containers: containers(pod_spec),
        options,
    };
    // At restricted, baseline checks replaced by a restricted check that exists at `version`.
    let overridden: BTreeSet<&str> = if level == Level::Restricted {
        CHECKS
            .iter()
            .filter(|c| c.info.revision_at(version).is_some())
            .flat_map(|c| c.info.overrides.iter().copied())
            .collect()
    } else {
        BTreeSet::new()
    };
    let mut out = Vec::new();
    for c in CHECKS {
        if c.info.level > level || overridden.contains(c.info.id) {
            continue;
        }
        let Some(rev) = c.info.revision_at(version) else {
            continue;
        };
        if let Some(f) = (c.run)(rev, &pod) {
            out.push(Violation {
                check: c.info.id,
                level: c.info.level,
                reason: f.reason,
                detail: f.detail,
                targets: f.targets,
            });
        }
    }
    out
}

struct Pod<'a> {
    meta: &'a Value,
    spec: &'a Value,
    containers: Vec<(ContainerRef, &'a Value)>,
    options: &'a Options,
}

impl Pod<'_> {
    fn security_context(&self) -> Option<&Value> {
        get(self.spec, &["securityContext"])
    }

    fn is_windows(&self) -> bool {
        str_at(self.spec, &["os", "name"]) == Some("windows")
    }

    /// `spec.hostUsers: false`: the pod runs in a user namespace.
    fn user_namespace(&self) -> bool {
        bool_at(self.spec, &["hostUsers"]) == Some(false)
    }
}

struct Finding {
    reason: String,
    detail: String,
    targets: Vec<Target>,
}

// ---- JSON helpers: absent and `null` are both unset ----

fn get<'a>(v: &'a Value, path: &[&str]) -> Option<&'a Value> {
    path.iter()
        .try_fold(v, |v, k| v.get(k))
        .filter(|v| !v.is_null())
}

fn str_at<'a>(v: &'a Value, path: &[&str]) -> Option<&'a str> {
    get(v, path).and_then(Value::as_str)
}

fn bool_at(v: &Value, path: &[&str]) -> Option<bool> {
    get(v, path).and_then(Value::as_bool)
}

fn int_at(v: &Value, path: &[&str]) -> Option<i64> {
    get(v, path).and_then(Value::as_i64)
}

fn array_at<'a>(v: &'a Value, path: &[&str]) -> &'a [Value] {
    get(v, path)
        .and_then(Value::as_array)
        .map_or(&[], Vec::as_slice)
}

// ---- upstream's message helpers ----

fn join_quote<S: AsRef<str>>(items: impl IntoIterator<Item = S>) -> String {
    items
        .into_iter()
        .map(|s| format!("{:?}", s.as_ref()))
        .collect::<Vec<_>>()
        .join(", ")
}

fn pluralize<'s>(singular: &'s str, plural: &'s str, n: usize) -> &'s str {
    if n == 1 { singular } else { plural }
}

/// `container "a"` or `containers "a", "b"`.
fn containers_phrase(cs: &[ContainerRef]) -> String {
    format!(
        "{} {}",
        pluralize("container", "containers", cs.len()),
        join_quote(cs.iter().map(|c| c.name.as_str()))
    )
}

/// `pod`, `container "a"`, `pod and containers "a", "b"`.
fn setters_phrase(pod: bool, cs: &[ContainerRef]) -> String {
    let mut parts = Vec::new();
    if pod {
        parts.push("pod".to_owned());
    }
    if !cs.is_empty() {
        parts.push(containers_phrase(cs));
    }
    parts.join(" and ")
}

fn targets(pod_field: Option<&str>, cs: &[ContainerRef]) -> Vec<Target> {
    pod_field
        .map(|f| Target::Pod(f.to_owned()))
        .into_iter()
        .chain(cs.iter().cloned().map(Target::Container))
        .collect()
}

/// The containers for which `bad` holds.
fn bad_containers(pod: &Pod<'_>, mut bad: impl FnMut(&Value) -> bool) -> Vec<ContainerRef> {
    pod.containers
        .iter()
        .filter(|(_, c)| bad(c))
        .map(|(r, _)| r.clone())
        .collect()
}

// ---- baseline ----

fn host_namespaces(_: u32, pod: &Pod<'_>) -> Option<Finding> {
    let set: Vec<&str> = ["hostNetwork", "hostPID", "hostIPC"]
        .into_iter()
        .filter(|f| bool_at(pod.spec, &[f]) == Some(true))
        .collect();
    if set.is_empty() {
        return None;
    }
    Some(Finding {
        reason: "host namespaces".into(),
        detail: set
            .iter()
            .map(|f| format!("{f}=true"))
            .collect::<Vec<_>>()
            .join(", "),
        targets: set
            .iter()
            .map(|f| Target::Pod(format!("spec.{f}")))
            .collect(),
    })
}

fn privileged(_: u32, pod: &Pod<'_>) -> Option<Finding> {
    let bad = bad_containers(pod, |c| {
        bool_at(c, &["securityContext", "privileged"]) == Some(true)
    });
    (!bad.is_empty()).then(|| Finding {
        reason: "privileged".into(),
        detail: format!(
            "{} must not set securityContext.privileged=true",
            containers_phrase(&bad)
        ),
        targets: targets(None, &bad),
    })
}

/// The capabilities container runtimes grant by default (baseline may add these back).
const DEFAULT_CAPABILITIES: [&str; 13] = [
    "AUDIT_WRITE",
    "CHOWN",
    "DAC_OVERRIDE",
    "FOWNER",
    "FSETID",
    "KILL",
    "MKNOD",
    "NET_BIND_SERVICE",
    "SETFCAP",
    "SETGID",
    "SETPCAP",
    "SETUID",
    "SYS_CHROOT",
];

fn added_capabilities(c: &Value) -> impl Iterator<Item = &str> {
    array_at(c, &["securityContext", "capabilities", "add"])
        .iter()
        .filter_map(Value::as_str)
}

fn capabilities_baseline(_: u32, pod: &Pod<'_>) -> Option<Finding> {
    let mut forbidden = BTreeSet::new();
    let bad = bad_containers(pod, |c| {
        let mut bad = false;
        for cap in added_capabilities(c) {
            if !DEFAULT_CAPABILITIES.contains(&cap) {
                forbidden.insert(cap.to_owned());
                bad = true;
            }
        }
        bad
    });
    (!bad.is_empty()).then(|| Finding {
        reason: "non-default capabilities".into(),
        detail: format!(
            "{} must not include {} in securityContext.capabilities.add",
            containers_phrase(&bad),
            join_quote(&forbidden)
        ),
        targets: targets(None, &bad),
    })
}

fn volumes<'a>(pod: &Pod<'a>) -> impl Iterator<Item = (&'a str, &'a Value)> {
    array_at(pod.spec, &["volumes"])
        .iter()
        .map(|v| (v.get("name").and_then(Value::as_str).unwrap_or(""), v))
}

fn host_path_volumes(_: u32, pod: &Pod<'_>) -> Option<Finding> {
    let bad: Vec<&str> = volumes(pod)
        .filter(|(_, v)| get(v, &["hostPath"]).is_some())
        .map(|(n, _)| n)
        .collect();
    (!bad.is_empty()).then(|| Finding {
        reason: "hostPath volumes".into(),
        detail: format!(
            "{} {}",
            pluralize("volume", "volumes", bad.len()),
            join_quote(&bad)
        ),
        targets: bad
            .iter()
            .map(|n| Target::Pod(format!("spec.volumes[{n:?}]")))
            .collect(),
    })
}

fn host_ports(_: u32, pod: &Pod<'_>) -> Option<Finding> {
    let allowed = |p: i64| {
        u16::try_from(p).is_ok_and(|p| {
            pod.options
                .allowed_host_ports
                .iter()
                .any(|r| r.contains(&p))
        })
    };
    // Upstream sorts the ports as strings.
    let mut forbidden = BTreeSet::new();
    let bad = bad_containers(pod, |c| {
        let mut bad = false;
        for port in array_at(c, &["ports"]) {
            let hp = int_at(port, &["hostPort"]).unwrap_or(0);
            if hp != 0 && !allowed(hp) {
                forbidden.insert(hp.to_string());
                bad = true;
            }
        }
        bad
    });
    (!bad.is_empty()).then(|| Finding {
        reason: "hostPort".into(),
        detail: format!(
            "{} {} {} {}",
            containers_phrase(&bad),
            pluralize("uses", "use", bad.len()),
            pluralize("hostPort", "hostPorts", forbidden.len()),
            forbidden.iter().cloned().collect::<Vec<_>>().join(", ")
        ),
        targets: targets(None, &bad),
    })
}

const APPARMOR_ANNOTATION_PREFIX: &str = "container.apparmor.security.beta.kubernetes.io/";

fn app_armor(_: u32, pod: &Pod<'_>) -> Option<Finding> {
    // The fields (Kubernetes 1.30+), which upstream checks in its only (v1.0) revision: a
    // profile whose type (empty if missing) is not RuntimeDefault or Localhost.
    let mut values = BTreeSet::new();
    let mut bad_type = |sc: Option<&Value>| {
        let Some(profile) = sc.and_then(|sc| get(sc, &["appArmorProfile"])) else {
            return false;
        };
        let t = str_at(profile, &["type"]).unwrap_or("");
        let bad = !matches!(t, "RuntimeDefault" | "Localhost");
        if bad {
            values.insert(t.to_owned());
        }
        bad
    };
    let pod_bad = bad_type(pod.security_context());
    let bad = bad_containers(pod, |c| bad_type(get(c, &["securityContext"])));
    // The deprecated annotations: empty, `runtime/default` or `localhost/*`.
    let mut annotations = BTreeSet::new();
    if let Some(map) = get(pod.meta, &["annotations"]).and_then(Value::as_object) {
        for (k, v) in map {
            let v = v.as_str().unwrap_or("");
            let ok = v.is_empty() || v == "runtime/default" || v.starts_with("localhost/");
            if k.starts_with(APPARMOR_ANNOTATION_PREFIX) && !ok {
                annotations.insert((k.clone(), v.to_owned()));
            }
        }
    }
    if !pod_bad && bad.is_empty() && annotations.is_empty() {
        return None;
    }
    let mut parts = Vec::new();
    if pod_bad || !bad.is_empty() {
        parts.push(format!(
            "{} must not set AppArmor profile type to {}",
            setters_phrase(pod_bad, &bad),
            join_quote(&values)
        ));
    }
    if !annotations.is_empty() {
        // Upstream quotes `key="value"` as a whole, without escaping.
        let list: Vec<String> = annotations
            .iter()
            .map(|(k, v)| format!("\"{k}={v:?}\""))
            .collect();
        parts.push(format!(
            "annotations must not set AppArmor profile type to {}",
            list.join(", ")
        ));
    }
    let mut tgts = targets(
        pod_bad.then_some("spec.securityContext.appArmorProfile.type"),
        &bad,
    );
    tgts.extend(
        annotations
            .iter()
            .map(|(k, _)| Target::Pod(format!("metadata.annotations[{k:?}]"))),
    );
    let count = values.len() + annotations.len();
    Some(Finding {
        reason: pluralize(
            "forbidden AppArmor profile",
            "forbidden AppArmor profiles",
            count,
        )
        .into(),
        detail: parts.join("; "),
        targets: tgts,
    })
}

fn se_linux_options(rev: u32, pod: &Pod<'_>) -> Option<Finding> {
    let allowed_type = |t: &str| {
        matches!(
            t,
            "" | "container_t" | "container_init_t" | "container_kvm_t"
        ) || (rev >= 31 && t == "container_engine_t")
    };
    let mut bad_types = BTreeSet::new();
    let (mut user, mut role) = (false, false);
    let mut check = |sc: Option<&Value>| {
        let Some(opts) = sc.and_then(|sc| get(sc, &["seLinuxOptions"])) else {
            return false;
        };
        let mut bad = false;
        if let Some(t) = str_at(opts, &["type"])
            && !allowed_type(t)
        {
            bad_types.insert(t.to_owned());
            bad = true;
        }
        if str_at(opts, &["user"]).is_some_and(|u| !u.is_empty()) {
            user = true;
            bad = true;
        }
        if str_at(opts, &["role"]).is_some_and(|r| !r.is_empty()) {
            role = true;
            bad = true;
        }
        bad
    };
    let pod_bad = check(pod.security_context());
    let bad = bad_containers(pod, |c| check(get(c, &["securityContext"])));
    if !pod_bad && bad.is_empty() {
        return None;
    }
    let mut what = Vec::new();
    if !bad_types.is_empty() {
        what.push(format!(
            "{} {}",
            pluralize("type", "types", bad_types.len()),
            join_quote(&bad_types)
        ));
    }
    if user {
        what.push("user may not be set".to_owned());
    }
    if role {
        what.push("role may not be set".to_owned());
    }
    Some(Finding {
        reason: "seLinuxOptions".into(),
        detail: format!(
            "{} set forbidden securityContext.seLinuxOptions: {}",
            setters_phrase(pod_bad, &bad),
            what.join("; ")
        ),
        targets: targets(
            pod_bad.then_some("spec.securityContext.seLinuxOptions"),
            &bad,
        ),
    })
}

/// Upstream's procMount v1.0: every container's `procMount` unset or `Default`.
fn proc_mount_default_only(pod: &Pod<'_>) -> Option<Finding> {
    let mut values = BTreeSet::new();
    let bad = bad_containers(pod, |c| {
        match str_at(c, &["securityContext", "procMount"]) {
            Some(p) if p != "Default" => {
                values.insert(p.to_owned());
                true
            }
            _ => false,
        }
    });
    (!bad.is_empty()).then(|| Finding {
        reason: "procMount".into(),
        detail: format!(
            "{} must not set securityContext.procMount to {}",
            containers_phrase(&bad),
            join_quote(&values)
        ),
        targets: targets(None, &bad),
    })
}

fn proc_mount_baseline(rev: u32, pod: &Pod<'_>) -> Option<Finding> {
    if rev >= 35 && pod.user_namespace() {
        return None;
    }
    proc_mount_default_only(pod)
}

fn proc_mount_restricted(_: u32, pod: &Pod<'_>) -> Option<Finding> {
    proc_mount_default_only(pod)
}

const SECCOMP_POD_ANNOTATION: &str = "seccomp.security.alpha.kubernetes.io/pod";
const SECCOMP_CONTAINER_ANNOTATION_PREFIX: &str = "container.seccomp.security.alpha.kubernetes.io/";

fn seccomp_baseline(rev: u32, pod: &Pod<'_>) -> Option<Finding> {
    if rev < 19 {
        return seccomp_annotations(pod);
    }
    // v1.19: the fields; a profile set to anything but RuntimeDefault or Localhost.
    let valid = |t: &str| matches!(t, "RuntimeDefault" | "Localhost");
    let mut values = BTreeSet::new();
    let mut bad_type = |sc: Option<&Value>| match profile_type(sc) {
        Some(t) if !valid(t) => {
            values.insert(t.to_owned());
            true
        }
        _ => false,
    };
    let pod_bad = bad_type(pod.security_context());
    let bad = bad_containers(pod, |c| bad_type(get(c, &["securityContext"])));
    (pod_bad || !bad.is_empty()).then(|| Finding {
        reason: "seccompProfile".into(),
        detail: format!(
            "{} must not set securityContext.seccompProfile.type to {}",
            setters_phrase(pod_bad, &bad),
            join_quote(&values)
        ),
        targets: targets(
            pod_bad.then_some("spec.securityContext.seccompProfile.type"),
            &bad,
        ),
    })
}

/// Before v1.19: the alpha annotations of the pod and of each container (by name) must be
/// `runtime/default`, `docker/default` or `localhost/*`.
fn seccomp_annotations(pod: &Pod<'_>) -> Option<Finding> {
    let annotations = get(pod.meta, &["annotations"]).and_then(Value::as_object)?;
    let valid =
        |v: &str| v == "runtime/default" || v == "docker/default" || v.starts_with("localhost/");
    let mut forbidden = BTreeSet::new();
    let keys = std::iter::once(SECCOMP_POD_ANNOTATION.to_owned()).chain(
        pod.containers
            .iter()
            .map(|(r, _)| format!("{SECCOMP_CONTAINER_ANNOTATION_PREFIX}{}", r.name)),
    );
    for key in keys {
        if let Some(v) = annotations.get(&key) {
            let v = v.as_str().unwrap_or("");
            if !valid(v) {
                forbidden.insert((key, v.to_owned()));
            }
        }
    }
    (!forbidden.is_empty()).then(|| Finding {
        reason: "seccompProfile".into(),
        detail: format!(
            "forbidden {} {}",
            pluralize("annotation", "annotations", forbidden.len()),
            forbidden
                .iter()
                .map(|(k, v)| format!("{k}={v:?}"))
                .collect::<Vec<_>>()
                .join(", ")
        ),
        targets: forbidden
            .iter()
            .map(|(k, _)| Target::Pod(format!("metadata.annotations[{k:?}]")))
            .collect(),
    })
}

/// The safe sysctls as of policy version `rev`.
fn sysctl_allowed(rev: u32, name: &str) -> bool {
    const V1_0: [&str; 5] = [
        "kernel.shm_rmid_forced",
        "net.ipv4.ip_local_port_range",
        "net.ipv4.tcp_syncookies",
        "net.ipv4.ping_group_range",
        "net.ipv4.ip_unprivileged_port_start",
    ];
    const V1_29: [&str; 4] = [
        "net.ipv4.tcp_keepalive_time",
        "net.ipv4.tcp_fin_timeout",
        "net.ipv4.tcp_keepalive_intvl",
        "net.ipv4.tcp_keepalive_probes",
    ];
    const V1_32: [&str; 2] = ["net.ipv4.tcp_rmem", "net.ipv4.tcp_wmem"];
    const V1_37: [&str; 2] = [
        "net.ipv4.tcp_slow_start_after_idle",
        "net.ipv4.tcp_notsent_lowat",
    ];
    V1_0.contains(&name)
        || (rev >= 27 && name == "net.ipv4.ip_local_reserved_ports")
        || (rev >= 29 && V1_29.contains(&name))
        || (rev >= 32 && V1_32.contains(&name))
        || (rev >= 37 && V1_37.contains(&name))
}

fn sysctls(rev: u32, pod: &Pod<'_>) -> Option<Finding> {
    let forbidden: Vec<&str> = pod
        .security_context()
        .map_or(&[][..], |sc| array_at(sc, &["sysctls"]))
        .iter()
        .map(|s| str_at(s, &["name"]).unwrap_or(""))
        .filter(|n| !sysctl_allowed(rev, n))
        .collect();
    (!forbidden.is_empty()).then(|| Finding {
        reason: "forbidden sysctls".into(),
        detail: forbidden.join(", "),
        targets: vec![Target::Pod("spec.securityContext.sysctls".into())],
    })
}

fn windows_host_process(_: u32, pod: &Pod<'_>) -> Option<Finding> {
    let host_process = |sc: Option<&Value>| {
        sc.and_then(|sc| bool_at(sc, &["windowsOptions", "hostProcess"])) == Some(true)
    };
    let pod_bad = host_process(pod.security_context());
    let bad = bad_containers(pod, |c| host_process(get(c, &["securityContext"])));
    (pod_bad || !bad.is_empty()).then(|| Finding {
        reason: "hostProcess".into(),
        detail: format!(
            "{} must not set securityContext.windowsOptions.hostProcess=true",
            setters_phrase(pod_bad, &bad)
        ),
        targets: targets(
            pod_bad.then_some("spec.securityContext.windowsOptions.hostProcess"),
            &bad,
        ),
    })
}

fn host_probes(_: u32, pod: &Pod<'_>) -> Option<Finding> {
    let mut hosts = BTreeSet::new();
    let bad = bad_containers(pod, |c| {
        let mut bad = false;
        let handlers = [
            &["livenessProbe"][..],
            &["readinessProbe"],
            &["startupProbe"],
            &["lifecycle", "postStart"],
            &["lifecycle", "preStop"],
        ];
        for h in handlers {
            let Some(handler) = get(c, h) else { continue };
            for action in ["httpGet", "tcpSocket"] {
                if let Some(host) = str_at(handler, &[action, "host"]).filter(|h| !h.is_empty()) {
                    hosts.insert(host.to_owned());
                    bad = true;
                }
            }
        }
        bad
    });
    (!bad.is_empty()).then(|| Finding {
        reason: "probe or lifecycle host".into(),
        detail: format!(
            "{} {} {} {}",
            containers_phrase(&bad),
            pluralize("uses", "use", bad.len()),
            pluralize(
                "probe or lifecycle host",
                "probe or lifecycle hosts",
                hosts.len()
            ),
            join_quote(&hosts)
        ),
        targets: targets(None, &bad),
    })
}

// ---- restricted ----

/// Volume sources restricted pods may use. (`image` was allowed in upstream's v1.0 revision
/// in Kubernetes 1.33, so it is allowed at every version, as upstream does.)
const ALLOWED_VOLUME_TYPES: [&str; 9] = [
    "configMap",
    "csi",
    "downwardAPI",
    "emptyDir",
    "ephemeral",
    "image",
    "persistentVolumeClaim",
    "projected",
    "secret",
];

/// The other volume sources of the core API.
const OTHER_VOLUME_TYPES: [&str; 21] = [
    "awsElasticBlockStore",
    "azureDisk",
    "azureFile",
    "cephfs",
    "cinder",
    "fc",
    "flexVolume",
    "flocker",
    "gcePersistentDisk",
    "gitRepo",
    "glusterfs",
    "hostPath",
    "iscsi",
    "nfs",
    "photonPersistentDisk",
    "portworxVolume",
    "quobyte",
    "rbd",
    "scaleIO",
    "storageos",
    "vsphereVolume",
];

fn restricted_volumes(_: u32, pod: &Pod<'_>) -> Option<Finding> {
    let mut bad = Vec::new();
    let mut types = BTreeSet::new();
    for (name, v) in volumes(pod) {
        let Some(fields) = v.as_object() else {
            continue;
        };
        let sources: Vec<&str> = fields
            .iter()
            .filter(|(k, val)| *k != "name" && !val.is_null())
            .map(|(k, _)| k.as_str())
            .collect();
        // No source at all is an emptyDir once the API server has defaulted it.
        if sources.iter().any(|s| ALLOWED_VOLUME_TYPES.contains(s)) || sources.is_empty() {
            continue;
        }
        bad.push(name);
        match sources.iter().find(|s| OTHER_VOLUME_TYPES.contains(s)) {
            Some(t) => types.insert((*t).to_owned()),
            None => types.insert("unknown".to_owned()),
        };
    }
    (!bad.is_empty()).then(|| Finding {
        reason: "restricted volume types".into(),
        detail: format!(
            "{} {} {} {} {}",
            pluralize("volume", "volumes", bad.len()),
            join_quote(&bad),
            pluralize("uses", "use", bad.len()),
            pluralize(
                "restricted volume type",
                "restricted volume types",
                types.len()
            ),
            join_quote(&types)
        ),
        targets: bad
            .iter()
            .map(|n| Target::Pod(format!("spec.volumes[{n:?}]")))
            .collect(),
    })
}

fn allow_privilege_escalation(rev: u32, pod: &Pod<'_>) -> Option<Finding> {
    if rev >= 25 && pod.is_windows() {
        return None;
    }
    let bad = bad_containers(pod, |c| {
        bool_at(c, &["securityContext", "allowPrivilegeEscalation"]) != Some(false)
    });
    (!bad.is_empty()).then(|| Finding {
        reason: "allowPrivilegeEscalation != false".into(),
        detail: format!(
            "{} must set securityContext.allowPrivilegeEscalation=false",
            containers_phrase(&bad)
        ),
        targets: targets(None, &bad),
    })
}

fn run_as_non_root(rev: u32, pod: &Pod<'_>) -> Option<Finding> {
    if rev >= 35 && pod.user_namespace() {
        return None;
    }
    let pod_value = pod
        .security_context()
        .and_then(|sc| bool_at(sc, &["runAsNonRoot"]));
    let pod_bad = pod_value == Some(false);
    let mut implicit = Vec::new();
    let explicit = bad_containers(pod, |c| {
        match bool_at(c, &["securityContext", "runAsNonRoot"]) {
            Some(v) => !v,
            None => false,
        }
    });
    for (r, c) in &pod.containers {
        if bool_at(c, &["securityContext", "runAsNonRoot"]).is_none() && pod_value != Some(true) {
            implicit.push(r.clone());
        }
    }
    if pod_bad || !explicit.is_empty() {
        return Some(Finding {
            reason: "runAsNonRoot != true".into(),
            detail: format!(
                "{} must not set securityContext.runAsNonRoot=false",
                setters_phrase(pod_bad, &explicit)
            ),
            targets: targets(
                pod_bad.then_some("spec.securityContext.runAsNonRoot"),
                &explicit,
            ),
        });
    }
    (!implicit.is_empty()).then(|| Finding {
        reason: "runAsNonRoot != true".into(),
        detail: format!(
            "pod or {} must set securityContext.runAsNonRoot=true",
            containers_phrase(&implicit)
        ),
        targets: targets(None, &implicit),
    })
}

fn run_as_user(rev: u32, pod: &Pod<'_>) -> Option<Finding> {
    if rev >= 35 && pod.user_namespace() {
        return None;
    }
    let root = |sc: Option<&Value>| sc.and_then(|sc| int_at(sc, &["runAsUser"])) == Some(0);
    let pod_bad = root(pod.security_context());
    let bad = bad_containers(pod, |c| root(get(c, &["securityContext"])));
    (pod_bad || !bad.is_empty()).then(|| Finding {
        reason: "runAsUser=0".into(),
        detail: format!("{} must not set runAsUser=0", setters_phrase(pod_bad, &bad)),
        targets: targets(pod_bad.then_some("spec.securityContext.runAsUser"), &bad),
    })
}

fn seccomp_restricted(rev: u32, pod: &Pod<'_>) -> Option<Finding> {
    if rev >= 25 && pod.is_windows() {
        return None;
    }
    let valid = |t: &str| matches!(t, "RuntimeDefault" | "Localhost");
    let mut values = BTreeSet::new();
    // A profile without a type counts as a bad, empty type.
    let pod_type = profile_type(pod.security_context());
    let pod_set = pod_type.is_some_and(valid);
    let pod_bad = pod_type.is_some_and(|t| !valid(t));
    if let Some(t) = pod_type.filter(|t| !valid(t)) {
        values.insert(t.to_owned());
    }
    let mut implicit = Vec::new();
    let mut explicit = Vec::new();
    for (r, c) in &pod.containers {
        match profile_type(get(c, &["securityContext"])) {
            Some(t) if !valid(t) => {
                values.insert(t.to_owned());
                explicit.push(r.clone());
            }
            Some(_) => {}
            None if !pod_set => implicit.push(r.clone()),
            None => {}
        }
    }
    if pod_bad || !explicit.is_empty() {
        return Some(Finding {
            reason: "seccompProfile".into(),
            detail: format!(
                "{} must not set securityContext.seccompProfile.type to {}",
                setters_phrase(pod_bad, &explicit),
                join_quote(&values)
            ),
            targets: targets(
                pod_bad.then_some("spec.securityContext.seccompProfile.type"),
                &explicit,
            ),
        });
    }
    (!implicit.is_empty()).then(|| Finding {
        reason: "seccompProfile".into(),
        detail: format!(
            "pod or {} must set securityContext.seccompProfile.type to \"RuntimeDefault\" or \"Localhost\"",
            containers_phrase(&implicit)
        ),
        targets: targets(None, &implicit),
    })
}

/// The seccomp profile type of a security context, if it has a profile (without a type: empty).
fn profile_type(sc: Option<&Value>) -> Option<&str> {
    sc.and_then(|sc| get(sc, &["seccompProfile"]))
        .map(|p| str_at(p, &["type"]).unwrap_or(""))
}

fn capabilities_restricted(rev: u32, pod: &Pod<'_>) -> Option<Finding> {
    if rev >= 25 && pod.is_windows() {
        return None;
    }
    let mut missing_drop = Vec::new();
    let mut bad_add = Vec::new();
    let mut forbidden = BTreeSet::new();
    for (r, c) in &pod.containers {
        let drops_all = array_at(c, &["securityContext", "capabilities", "drop"])
            .iter()
            .any(|d| d.as_str() == Some("ALL"));
        if !drops_all {
            missing_drop.push(r.clone());
        }
        let mut bad = false;
        for cap in added_capabilities(c) {
            if cap != "NET_BIND_SERVICE" {
                forbidden.insert(cap.to_owned());
                bad = true;
            }
        }
        if bad {
            bad_add.push(r.clone());
        }
    }
    if missing_drop.is_empty() && bad_add.is_empty() {
        return None;
    }
    let mut parts = Vec::new();
    if !missing_drop.is_empty() {
        parts.push(format!(
            "{} must set securityContext.capabilities.drop=[\"ALL\"]",
            containers_phrase(&missing_drop)
        ));
    }
    if !bad_add.is_empty() {
        parts.push(format!(
            "{} must not include {} in securityContext.capabilities.add",
            containers_phrase(&bad_add),
            join_quote(&forbidden)
        ));
    }
    let mut cs = missing_drop;
    for c in bad_add {
        if !cs.contains(&c) {
            cs.push(c);
        }
    }
    Some(Finding {
        reason: "unrestricted capabilities".into(),
        detail: parts.join("; "),
        targets: targets(None, &cs),
    })
}
