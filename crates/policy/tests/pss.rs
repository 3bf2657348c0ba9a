//! Every Pod Security Standards check: a passing and a failing pod at each level where it
//! applies, and before/after each version where the check changed.

use policy::{Level, Options, Target, Version, evaluate, evaluate_with};
use serde_json::{Value, json};

use Level::{Baseline, Privileged, Restricted};

const LATEST: Version = Version::Latest;

fn v(minor: u32) -> Version {
    Version::V1(minor)
}

/// A pod spec that passes `restricted` at every version: two containers and an init container.
fn clean() -> Value {
    let sc = json!({"allowPrivilegeEscalation": false, "capabilities": {"drop": ["ALL"]}});
    json!({
        "securityContext": {"runAsNonRoot": true, "seccompProfile": {"type": "RuntimeDefault"}},
        "initContainers": [{"name": "init", "image": "busybox", "securityContext": sc}],
        "containers": [
            {"name": "app", "image": "nginx", "securityContext": sc},
            {"name": "side", "image": "envoy", "securityContext": sc}
        ]
    })
}

/// Sets `value` at the JSON pointer `path`, creating objects on the way (array indices must
/// exist).
fn set(mut doc: Value, path: &str, value: Value) -> Value {
    let mut cur = &mut doc;
    let parts: Vec<&str> = path.trim_start_matches('/').split('/').collect();
    for (i, part) in parts.iter().enumerate() {
        let last = i == parts.len() - 1;
        cur = match cur {
            Value::Array(items) => &mut items[part.parse::<usize>().unwrap()],
            Value::Object(map) => {
                if last {
                    map.insert((*part).to_owned(), value);
                    return doc;
                }
                map.entry(*part).or_insert_with(|| json!({}))
            }
            other => panic!("cannot index {other} with {part}"),
        };
        if last {
            *cur = value;
            return doc;
        }
    }
    doc
}

/// Removes the member at `path` (an object key).
fn unset(mut doc: Value, path: &str) -> Value {
    let (parent, key) = path.rsplit_once('/').unwrap();
    doc.pointer_mut(parent)
        .unwrap()
        .as_object_mut()
        .unwrap()
        .remove(key);
    doc
}

fn ids_meta(level: Level, version: Version, meta: &Value, spec: &Value) -> Vec<&'static str> {
    evaluate(level, version, meta, spec)
        .into_iter()
        .map(|v| v.check)
        .collect()
}

fn ids(level: Level, version: Version, spec: &Value) -> Vec<&'static str> {
    ids_meta(level, version, &json!({}), spec)
}

/// The one message of the one violation.
fn message(level: Level, version: Version, meta: &Value, spec: &Value) -> String {
    let found = evaluate(level, version, meta, spec);
    assert_eq!(found.len(), 1, "{found:#?}");
    found[0].message()
}

const NONE: [&str; 0] = [];

#[test]
fn clean_pod_passes_everywhere() {
    for minor in 0..=40 {
        for level in [Privileged, Baseline, Restricted] {
            assert_eq!(ids(level, v(minor), &clean()), NONE, "{level} v1.{minor}");
        }
    }
    assert_eq!(ids(Restricted, LATEST, &clean()), NONE);
}

#[test]
fn privileged_level_checks_nothing() {
    let spec = set(clean(), "/hostNetwork", json!(true));
    let spec = set(
        spec,
        "/containers/0/securityContext/privileged",
        json!(true),
    );
    assert_eq!(ids(Privileged, LATEST, &spec), NONE);
}

#[test]
fn host_namespaces() {
    for field in ["hostNetwork", "hostPID", "hostIPC"] {
        let bad = set(clean(), &format!("/{field}"), json!(true));
        let good = set(clean(), &format!("/{field}"), json!(false));
        for level in [Baseline, Restricted] {
            assert_eq!(ids(level, v(0), &bad), ["hostNamespaces"]);
            assert_eq!(ids(level, LATEST, &bad), ["hostNamespaces"]);
            assert_eq!(ids(level, LATEST, &good), NONE);
        }
    }
    let both = set(
        set(clean(), "/hostNetwork", json!(true)),
        "/hostPID",
        json!(true),
    );
    assert_eq!(
        message(Baseline, LATEST, &json!({}), &both),
        "host namespaces (hostNetwork=true, hostPID=true)"
    );
    let found = evaluate(Baseline, LATEST, &json!({}), &both);
    assert_eq!(
        found[0].targets,
        [
            Target::Pod("spec.hostNetwork".into()),
            Target::Pod("spec.hostPID".into())
        ]
    );
}

#[test]
fn privileged_containers() {
    let bad = set(
        clean(),
        "/initContainers/0/securityContext/privileged",
        json!(true),
    );
    let good = set(
        clean(),
        "/initContainers/0/securityContext/privileged",
        json!(false),
    );
    for level in [Baseline, Restricted] {
        assert_eq!(ids(level, v(0), &bad), ["privileged"]);
        assert_eq!(ids(level, LATEST, &good), NONE);
    }
    assert_eq!(
        message(Baseline, LATEST, &json!({}), &bad),
        r#"privileged (container "init" must not set securityContext.privileged=true)"#
    );
    let found = evaluate(Baseline, LATEST, &json!({}), &bad);
    let c: Vec<_> = found[0].containers().collect();
    assert_eq!(c.len(), 1);
    assert_eq!(
        (c[0].kind, c[0].index, c[0].name.as_str()),
        (policy::ContainerKind::Init, 0, "init")
    );
}

#[test]
fn capabilities_baseline() {
    let add = |caps: Value| {
        set(
            clean(),
            "/containers/1/securityContext/capabilities/add",
            caps,
        )
    };
    let bad = add(json!(["NET_ADMIN", "SYS_TIME", "CHOWN"]));
    let default = add(json!(["CHOWN", "KILL", "NET_BIND_SERVICE", "SYS_CHROOT"]));
    assert_eq!(ids(Baseline, LATEST, &bad), ["capabilities_baseline"]);
    assert_eq!(ids(Baseline, LATEST, &default), NONE);
    assert_eq!(
        message(Baseline, LATEST, &json!({}), &bad),
        r#"non-default capabilities (container "side" must not include "NET_ADMIN", "SYS_TIME" in securityContext.capabilities.add)"#
    );
    // At restricted, capabilities_restricted replaces it from v1.22 on ...
    assert_eq!(ids(Restricted, LATEST, &bad), ["capabilities_restricted"]);
    assert_eq!(
        ids(Restricted, v(22), &default),
        ["capabilities_restricted"]
    );
    // ... and before v1.22 the baseline check is what restricted runs.
    assert_eq!(ids(Restricted, v(21), &bad), ["capabilities_baseline"]);
    assert_eq!(ids(Restricted, v(21), &default), NONE);
}

#[test]
fn host_path_volumes() {
    let bad = set(
        clean(),
        "/volumes",
        json!([{"name": "root", "hostPath": {"path": "/"}}]),
    );
    let good = set(
        clean(),
        "/volumes",
        json!([{"name": "cache", "emptyDir": {}}]),
    );
    assert_eq!(ids(Baseline, v(0), &bad), ["hostPathVolumes"]);
    assert_eq!(ids(Baseline, LATEST, &good), NONE);
    assert_eq!(
        message(Baseline, LATEST, &json!({}), &bad),
        r#"hostPath volumes (volume "root")"#
    );
    // Restricted reports it as a restricted volume type instead (override).
    assert_eq!(ids(Restricted, LATEST, &bad), ["restrictedVolumes"]);
    assert_eq!(ids(Restricted, LATEST, &good), NONE);
}

#[test]
fn host_ports() {
    let ports =
        json!([{"containerPort": 80, "hostPort": 8080}, {"containerPort": 443, "hostPort": 443}]);
    let bad = set(clean(), "/containers/0/ports", ports);
    let zero = set(
        clean(),
        "/containers/0/ports",
        json!([{"containerPort": 80, "hostPort": 0}]),
    );
    for level in [Baseline, Restricted] {
        assert_eq!(ids(level, v(0), &bad), ["hostPorts"]);
        assert_eq!(ids(level, LATEST, &zero), NONE);
    }
    assert_eq!(
        message(Baseline, LATEST, &json!({}), &bad),
        r#"hostPort (container "app" uses hostPorts 443, 8080)"#
    );
    // Ephemeral containers are checked too.
    let eph = set(
        clean(),
        "/ephemeralContainers",
        json!([{"name": "dbg", "image": "busybox", "ports": [{"containerPort": 1, "hostPort": 9999}]}]),
    );
    assert_eq!(ids(Baseline, LATEST, &eph), ["hostPorts"]);
    // The standard's "known list": allowed ranges, off by default.
    let opts = Options {
        allowed_host_ports: vec![443..=443, 8000..=8099],
    };
    assert!(evaluate_with(&opts, Baseline, LATEST, &json!({}), &bad).is_empty());
    let opts = Options {
        allowed_host_ports: vec![443..=443],
    };
    let found = evaluate_with(&opts, Baseline, LATEST, &json!({}), &bad);
    assert_eq!(
        found[0].message(),
        r#"hostPort (container "app" uses hostPort 8080)"#
    );
}

#[test]
fn app_armor_annotations() {
    let key = "container.apparmor.security.beta.kubernetes.io/app";
    let bad = json!({"annotations": {key: "unconfined"}});
    for level in [Baseline, Restricted] {
        assert_eq!(ids_meta(level, v(0), &bad, &clean()), ["appArmorProfile"]);
        assert_eq!(ids_meta(level, LATEST, &bad, &clean()), ["appArmorProfile"]);
        for ok in ["runtime/default", "localhost/my-profile", ""] {
            let meta = json!({"annotations": {key: ok}});
            assert_eq!(ids_meta(level, LATEST, &meta, &clean()), NONE, "{ok}");
        }
    }
    assert_eq!(
        message(Baseline, LATEST, &bad, &clean()),
        r#"forbidden AppArmor profile (annotations must not set AppArmor profile type to "container.apparmor.security.beta.kubernetes.io/app="unconfined"")"#
    );
    let many = json!({"annotations": {
        "container.apparmor.security.beta.kubernetes.io/": "bogus",
        "container.apparmor.security.beta.kubernetes.io/a": "",
        "container.apparmor.security.beta.kubernetes.io/b": "runtime/default",
        "container.apparmor.security.beta.kubernetes.io/c": "localhost/",
        "container.apparmor.security.beta.kubernetes.io/d": "localhost/foo",
        "container.apparmor.security.beta.kubernetes.io/e": "unconfined",
        "container.apparmor.security.beta.kubernetes.io/f": "unknown",
        "other.example.com/e": "unconfined"
    }});
    assert_eq!(
        message(Baseline, LATEST, &many, &clean()),
        concat!(
            r#"forbidden AppArmor profiles (annotations must not set AppArmor profile type to "#,
            r#""container.apparmor.security.beta.kubernetes.io/="bogus"", "#,
            r#""container.apparmor.security.beta.kubernetes.io/e="unconfined"", "#,
            r#""container.apparmor.security.beta.kubernetes.io/f="unknown"")"#
        )
    );
}

#[test]
fn app_armor_fields() {
    let pod_bad = set(
        clean(),
        "/securityContext/appArmorProfile",
        json!({"type": "Unconfined"}),
    );
    let ctr_bad = set(
        clean(),
        "/containers/0/securityContext/appArmorProfile",
        json!({"type": "Unconfined"}),
    );
    let good = set(
        set(
            clean(),
            "/securityContext/appArmorProfile",
            json!({"type": "RuntimeDefault"}),
        ),
        "/containers/0/securityContext/appArmorProfile",
        json!({"type": "Localhost", "localhostProfile": "k8s-nginx"}),
    );
    let no_type = set(
        clean(),
        "/securityContext/appArmorProfile",
        json!({"localhostProfile": "x"}),
    );
    for level in [Baseline, Restricted] {
        assert_eq!(ids(level, LATEST, &no_type), ["appArmorProfile"]);
        assert_eq!(ids(level, LATEST, &pod_bad), ["appArmorProfile"]);
        assert_eq!(ids(level, LATEST, &ctr_bad), ["appArmorProfile"]);
        assert_eq!(ids(level, LATEST, &good), NONE);
        // Upstream checks the fields in its v1.0 revision: every version.
        assert_eq!(ids(level, v(25), &ctr_bad), ["appArmorProfile"]);
    }
    assert_eq!(
        message(Baseline, LATEST, &json!({}), &pod_bad),
        r#"forbidden AppArmor profile (pod must not set AppArmor profile type to "Unconfined")"#
    );
    assert_eq!(
        message(Baseline, LATEST, &json!({}), &ctr_bad),
        r#"forbidden AppArmor profile (container "app" must not set AppArmor profile type to "Unconfined")"#
    );
    let both = set(
        pod_bad,
        "/containers/1/securityContext/appArmorProfile",
        json!({"type": "Unconfined"}),
    );
    assert_eq!(
        message(Baseline, LATEST, &json!({}), &both),
        r#"forbidden AppArmor profile (pod and container "side" must not set AppArmor profile type to "Unconfined")"#
    );
}

#[test]
fn se_linux_options() {
    let opts = |o: Value| set(clean(), "/containers/0/securityContext/seLinuxOptions", o);
    for level in [Baseline, Restricted] {
        assert_eq!(
            ids(level, v(0), &opts(json!({"type": "spc_t"}))),
            ["seLinuxOptions"]
        );
        assert_eq!(
            ids(level, LATEST, &opts(json!({"user": "system_u"}))),
            ["seLinuxOptions"]
        );
        assert_eq!(
            ids(level, LATEST, &opts(json!({"role": "system_r"}))),
            ["seLinuxOptions"]
        );
        for t in ["", "container_t", "container_init_t", "container_kvm_t"] {
            assert_eq!(
                ids(level, v(0), &opts(json!({"type": t, "level": "s0:c1,c2"}))),
                NONE
            );
        }
        // container_engine_t from v1.31.
        assert_eq!(
            ids(level, v(30), &opts(json!({"type": "container_engine_t"}))),
            ["seLinuxOptions"]
        );
        assert_eq!(
            ids(level, v(31), &opts(json!({"type": "container_engine_t"}))),
            NONE
        );
    }
    let pod_bad = set(
        clean(),
        "/securityContext/seLinuxOptions",
        json!({"type": "spc_t"}),
    );
    assert_eq!(ids(Baseline, LATEST, &pod_bad), ["seLinuxOptions"]);
    let both = set(
        pod_bad,
        "/containers/1/securityContext/seLinuxOptions",
        json!({"type": "unconfined_t", "user": "u"}),
    );
    assert_eq!(
        message(Baseline, LATEST, &json!({}), &both),
        r#"seLinuxOptions (pod and container "side" set forbidden securityContext.seLinuxOptions: types "spc_t", "unconfined_t"; user may not be set)"#
    );
}

#[test]
fn proc_mount() {
    let unmasked = set(
        clean(),
        "/containers/0/securityContext/procMount",
        json!("Unmasked"),
    );
    let default = set(
        clean(),
        "/containers/0/securityContext/procMount",
        json!("Default"),
    );
    for level in [Baseline, Restricted] {
        assert_eq!(ids(level, v(0), &default), NONE);
    }
    assert_eq!(ids(Baseline, v(0), &unmasked), ["procMount"]);
    assert_eq!(ids(Baseline, LATEST, &unmasked), ["procMount"]);
    assert_eq!(
        message(Baseline, LATEST, &json!({}), &unmasked),
        r#"procMount (container "app" must not set securityContext.procMount to "Unmasked")"#
    );
    // v1.35: baseline allows any procMount in a user namespace (hostUsers: false) ...
    let userns = set(unmasked.clone(), "/hostUsers", json!(false));
    assert_eq!(ids(Baseline, v(34), &userns), ["procMount"]);
    assert_eq!(ids(Baseline, v(35), &userns), NONE);
    assert_eq!(ids(Baseline, LATEST, &userns), NONE);
    // ... restricted does not: procMount_restricted replaces procMount from v1.35.
    assert_eq!(ids(Restricted, v(34), &userns), ["procMount"]);
    assert_eq!(ids(Restricted, v(35), &userns), ["procMount_restricted"]);
    assert_eq!(ids(Restricted, LATEST, &unmasked), ["procMount_restricted"]);
    assert_eq!(ids(Restricted, LATEST, &default), NONE);
}

#[test]
fn seccomp_baseline_fields_from_v1_19() {
    let ctr = set(
        clean(),
        "/containers/0/securityContext/seccompProfile",
        json!({"type": "Unconfined"}),
    );
    let baseline_pod = unset(clean(), "/securityContext/seccompProfile");
    let pod = set(
        baseline_pod.clone(),
        "/securityContext/seccompProfile",
        json!({"type": "Unconfined"}),
    );
    assert_eq!(ids(Baseline, v(19), &ctr), ["seccompProfile_baseline"]);
    assert_eq!(ids(Baseline, LATEST, &pod), ["seccompProfile_baseline"]);
    assert_eq!(ids(Baseline, LATEST, &baseline_pod), NONE);
    assert_eq!(
        message(Baseline, LATEST, &json!({}), &pod),
        r#"seccompProfile (pod must not set securityContext.seccompProfile.type to "Unconfined")"#
    );
    // Before v1.19 the fields are not looked at.
    assert_eq!(ids(Baseline, v(18), &ctr), NONE);
    // Restricted reports it through seccompProfile_restricted (override) from v1.19.
    assert_eq!(ids(Restricted, LATEST, &ctr), ["seccompProfile_restricted"]);
}

#[test]
fn seccomp_baseline_annotations_before_v1_19() {
    let pod_key = "seccomp.security.alpha.kubernetes.io/pod";
    let ctr_key = "container.seccomp.security.alpha.kubernetes.io/app";
    let bad = json!({"annotations": {pod_key: "unconfined", ctr_key: "unconfined"}});
    let good = json!({"annotations": {pod_key: "runtime/default", ctr_key: "localhost/prof"}});
    let docker = json!({"annotations": {pod_key: "docker/default"}});
    for level in [Baseline, Restricted] {
        assert_eq!(
            ids_meta(level, v(18), &bad, &clean()),
            ["seccompProfile_baseline"]
        );
        assert_eq!(ids_meta(level, v(0), &good, &clean()), NONE);
        assert_eq!(ids_meta(level, v(0), &docker, &clean()), NONE);
        // From v1.19 the annotations are not looked at.
        assert_eq!(ids_meta(level, v(19), &bad, &clean()), NONE);
    }
    assert_eq!(
        message(Baseline, v(18), &bad, &clean()),
        r#"seccompProfile (forbidden annotations container.seccomp.security.alpha.kubernetes.io/app="unconfined", seccomp.security.alpha.kubernetes.io/pod="unconfined")"#
    );
    // An annotation for a container the pod does not have is not looked at.
    let other = json!({"annotations": {"container.seccomp.security.alpha.kubernetes.io/gone": "unconfined"}});
    assert_eq!(ids_meta(Baseline, v(18), &other, &clean()), NONE);
}

#[test]
fn sysctls_safe_list_by_version() {
    let with = |name: &str| {
        set(
            clean(),
            "/securityContext/sysctls",
            json!([{"name": name, "value": "1"}]),
        )
    };
    // (sysctl, first version where it is safe)
    let table = [
        ("kernel.shm_rmid_forced", 0),
        ("net.ipv4.ip_local_port_range", 0),
        ("net.ipv4.tcp_syncookies", 0),
        ("net.ipv4.ping_group_range", 0),
        ("net.ipv4.ip_unprivileged_port_start", 0),
        ("net.ipv4.ip_local_reserved_ports", 27),
        ("net.ipv4.tcp_keepalive_time", 29),
        ("net.ipv4.tcp_fin_timeout", 29),
        ("net.ipv4.tcp_keepalive_intvl", 29),
        ("net.ipv4.tcp_keepalive_probes", 29),
        ("net.ipv4.tcp_rmem", 32),
        ("net.ipv4.tcp_wmem", 32),
        ("net.ipv4.tcp_slow_start_after_idle", 37),
        ("net.ipv4.tcp_notsent_lowat", 37),
    ];
    for (name, since) in table {
        for level in [Baseline, Restricted] {
            assert_eq!(
                ids(level, v(since), &with(name)),
                NONE,
                "{name} at v1.{since}"
            );
            assert_eq!(ids(level, LATEST, &with(name)), NONE, "{name} at latest");
            if since > 0 {
                assert_eq!(
                    ids(level, v(since - 1), &with(name)),
                    ["sysctls"],
                    "{name} before v1.{since}"
                );
            }
        }
    }
    let bad = set(
        clean(),
        "/securityContext/sysctls",
        json!([{"name": "kernel.msgmax", "value": "1"}, {"name": "kernel.shm_rmid_forced", "value": "1"}, {"name": "net.core.somaxconn", "value": "1"}]),
    );
    assert_eq!(
        message(Baseline, LATEST, &json!({}), &bad),
        "forbidden sysctls (kernel.msgmax, net.core.somaxconn)"
    );
}

#[test]
fn windows_host_process() {
    let pod = set(
        clean(),
        "/securityContext/windowsOptions",
        json!({"hostProcess": true}),
    );
    let ctr = set(
        clean(),
        "/containers/1/securityContext/windowsOptions",
        json!({"hostProcess": true}),
    );
    let off = set(
        clean(),
        "/securityContext/windowsOptions",
        json!({"hostProcess": false, "runAsUserName": "x"}),
    );
    for level in [Baseline, Restricted] {
        assert_eq!(ids(level, v(0), &pod), ["windowsHostProcess"]);
        assert_eq!(ids(level, LATEST, &ctr), ["windowsHostProcess"]);
        assert_eq!(ids(level, LATEST, &off), NONE);
    }
    assert_eq!(
        message(Baseline, LATEST, &json!({}), &ctr),
        r#"hostProcess (container "side" must not set securityContext.windowsOptions.hostProcess=true)"#
    );
}

#[test]
fn host_probes_and_lifecycle_from_v1_34() {
    let probe = set(
        clean(),
        "/containers/0/livenessProbe",
        json!({"httpGet": {"host": "10.0.0.1", "port": 80}}),
    );
    let hook = set(
        clean(),
        "/initContainers/0/lifecycle",
        json!({"preStop": {"tcpSocket": {"host": "node", "port": 1}}}),
    );
    let empty = set(
        clean(),
        "/containers/0/readinessProbe",
        json!({"httpGet": {"host": "", "port": 80}}),
    );
    for level in [Baseline, Restricted] {
        for bad in [&probe, &hook] {
            assert_eq!(ids(level, v(33), bad), NONE);
            assert_eq!(ids(level, v(34), bad), ["hostProbesAndHostLifecycle"]);
            assert_eq!(ids(level, LATEST, bad), ["hostProbesAndHostLifecycle"]);
        }
        assert_eq!(ids(level, LATEST, &empty), NONE);
    }
    assert_eq!(
        message(Baseline, LATEST, &json!({}), &probe),
        r#"probe or lifecycle host (container "app" uses probe or lifecycle host "10.0.0.1")"#
    );
}

#[test]
fn restricted_volumes() {
    let allowed = json!([
        {"name": "a", "configMap": {"name": "c"}},
        {"name": "b", "csi": {"driver": "d"}},
        {"name": "c", "downwardAPI": {}},
        {"name": "d", "emptyDir": {}},
        {"name": "e", "ephemeral": {"volumeClaimTemplate": {}}},
        {"name": "f", "image": {"reference": "x"}},
        {"name": "g", "persistentVolumeClaim": {"claimName": "p"}},
        {"name": "h", "projected": {"sources": []}},
        {"name": "i", "secret": {"secretName": "s"}},
        {"name": "j"}
    ]);
    let good = set(clean(), "/volumes", allowed);
    assert_eq!(ids(Restricted, v(0), &good), NONE);
    assert_eq!(ids(Restricted, LATEST, &good), NONE);
    let bad = set(
        clean(),
        "/volumes",
        json!([{"name": "n", "nfs": {"server": "s", "path": "/"}}, {"name": "g", "gitRepo": {"repository": "r"}}, {"name": "x", "madeUp": {}}]),
    );
    assert_eq!(ids(Restricted, v(0), &bad), ["restrictedVolumes"]);
    assert_eq!(ids(Baseline, LATEST, &bad), NONE);
    assert_eq!(
        message(Restricted, LATEST, &json!({}), &bad),
        r#"restricted volume types (volumes "n", "g", "x" use restricted volume types "gitRepo", "nfs", "unknown")"#
    );
}

#[test]
fn allow_privilege_escalation() {
    let missing = unset(
        clean(),
        "/containers/0/securityContext/allowPrivilegeEscalation",
    );
    let on = set(
        clean(),
        "/containers/0/securityContext/allowPrivilegeEscalation",
        json!(true),
    );
    assert_eq!(
        ids(Restricted, v(8), &missing),
        ["allowPrivilegeEscalation"]
    );
    assert_eq!(ids(Restricted, LATEST, &on), ["allowPrivilegeEscalation"]);
    // The check starts at v1.8, and is restricted only.
    assert_eq!(ids(Restricted, v(7), &missing), NONE);
    assert_eq!(ids(Baseline, LATEST, &on), NONE);
    assert_eq!(
        message(Restricted, LATEST, &json!({}), &missing),
        r#"allowPrivilegeEscalation != false (container "app" must set securityContext.allowPrivilegeEscalation=false)"#
    );
    // v1.25: Windows pods are exempt.
    let windows = set(on, "/os", json!({"name": "windows"}));
    assert_eq!(
        ids(Restricted, v(24), &windows),
        ["allowPrivilegeEscalation"]
    );
    assert_eq!(ids(Restricted, v(25), &windows), NONE);
}

#[test]
fn run_as_non_root() {
    // Pod-level true covers containers that do not say.
    assert_eq!(ids(Restricted, v(0), &clean()), NONE);
    // Without pod-level, every container must say true.
    let no_pod = unset(clean(), "/securityContext/runAsNonRoot");
    assert_eq!(ids(Restricted, v(0), &no_pod), ["runAsNonRoot"]);
    assert_eq!(
        message(Restricted, LATEST, &json!({}), &no_pod),
        r#"runAsNonRoot != true (pod or containers "init", "app", "side" must set securityContext.runAsNonRoot=true)"#
    );
    let mut all = no_pod.clone();
    for p in ["/initContainers/0", "/containers/0", "/containers/1"] {
        all = set(
            all,
            &format!("{p}/securityContext/runAsNonRoot"),
            json!(true),
        );
    }
    assert_eq!(ids(Restricted, LATEST, &all), NONE);
    // One container explicitly false overrides the pod's true.
    let ctr_false = set(
        clean(),
        "/containers/1/securityContext/runAsNonRoot",
        json!(false),
    );
    assert_eq!(
        message(Restricted, LATEST, &json!({}), &ctr_false),
        r#"runAsNonRoot != true (container "side" must not set securityContext.runAsNonRoot=false)"#
    );
    let pod_false = set(clean(), "/securityContext/runAsNonRoot", json!(false));
    assert_eq!(
        message(Restricted, LATEST, &json!({}), &pod_false),
        "runAsNonRoot != true (pod must not set securityContext.runAsNonRoot=false)"
    );
    assert_eq!(ids(Baseline, LATEST, &pod_false), NONE);
    // v1.35: user-namespace pods are exempt.
    let userns = set(no_pod, "/hostUsers", json!(false));
    assert_eq!(ids(Restricted, v(34), &userns), ["runAsNonRoot"]);
    assert_eq!(ids(Restricted, v(35), &userns), NONE);
}

#[test]
fn run_as_user() {
    let pod_root = set(clean(), "/securityContext/runAsUser", json!(0));
    let ctr_root = set(
        clean(),
        "/initContainers/0/securityContext/runAsUser",
        json!(0),
    );
    let non_root = set(clean(), "/securityContext/runAsUser", json!(1000));
    for bad in [&pod_root, &ctr_root] {
        assert_eq!(
            ids(Restricted, v(22), bad),
            NONE,
            "the check starts at v1.23"
        );
        assert_eq!(ids(Restricted, v(23), bad), ["runAsUser"]);
        assert_eq!(ids(Baseline, LATEST, bad), NONE);
    }
    assert_eq!(ids(Restricted, LATEST, &non_root), NONE);
    let both = set(
        pod_root,
        "/containers/0/securityContext/runAsUser",
        json!(0),
    );
    assert_eq!(
        message(Restricted, LATEST, &json!({}), &both),
        r#"runAsUser=0 (pod and container "app" must not set runAsUser=0)"#
    );
    let userns = set(ctr_root, "/hostUsers", json!(false));
    assert_eq!(ids(Restricted, v(34), &userns), ["runAsUser"]);
    assert_eq!(ids(Restricted, v(35), &userns), NONE);
}

#[test]
fn seccomp_restricted() {
    let none = unset(clean(), "/securityContext/seccompProfile");
    assert_eq!(ids(Restricted, v(19), &none), ["seccompProfile_restricted"]);
    assert_eq!(
        ids(Restricted, v(18), &none),
        NONE,
        "the check starts at v1.19"
    );
    assert_eq!(ids(Baseline, LATEST, &none), NONE);
    assert_eq!(
        message(Restricted, LATEST, &json!({}), &none),
        r#"seccompProfile (pod or containers "init", "app", "side" must set securityContext.seccompProfile.type to "RuntimeDefault" or "Localhost")"#
    );
    // Container-level profiles without a pod-level one: each container must have one.
    let mut per = none.clone();
    for p in ["/initContainers/0", "/containers/0", "/containers/1"] {
        per = set(
            per,
            &format!("{p}/securityContext/seccompProfile"),
            json!({"type": "Localhost", "localhostProfile": "p.json"}),
        );
    }
    assert_eq!(ids(Restricted, LATEST, &per), NONE);
    let one_missing = unset(per, "/containers/1/securityContext/seccompProfile");
    assert_eq!(
        message(Restricted, LATEST, &json!({}), &one_missing),
        r#"seccompProfile (pod or container "side" must set securityContext.seccompProfile.type to "RuntimeDefault" or "Localhost")"#
    );
    // Windows pods exempt from v1.25.
    let windows = set(none, "/os", json!({"name": "windows"}));
    assert_eq!(
        ids(Restricted, v(24), &windows),
        ["seccompProfile_restricted"]
    );
    assert_eq!(ids(Restricted, v(25), &windows), NONE);
}

#[test]
fn capabilities_restricted() {
    let no_drop = unset(clean(), "/containers/0/securityContext/capabilities");
    let lower = set(
        clean(),
        "/containers/0/securityContext/capabilities/drop",
        json!(["all"]),
    );
    let bind = set(
        clean(),
        "/containers/0/securityContext/capabilities/add",
        json!(["NET_BIND_SERVICE"]),
    );
    let chown = set(
        clean(),
        "/containers/0/securityContext/capabilities/add",
        json!(["CHOWN"]),
    );
    assert_eq!(
        ids(Restricted, v(22), &no_drop),
        ["capabilities_restricted"]
    );
    assert_eq!(ids(Restricted, LATEST, &lower), ["capabilities_restricted"]);
    assert_eq!(ids(Restricted, LATEST, &bind), NONE);
    assert_eq!(ids(Restricted, LATEST, &chown), ["capabilities_restricted"]);
    assert_eq!(ids(Baseline, LATEST, &no_drop), NONE);
    assert_eq!(
        ids(Restricted, v(21), &no_drop),
        NONE,
        "the check starts at v1.22"
    );
    let both = set(
        no_drop,
        "/containers/1/securityContext/capabilities/add",
        json!(["SYS_ADMIN"]),
    );
    assert_eq!(
        message(Restricted, LATEST, &json!({}), &both),
        r#"unrestricted capabilities (container "app" must set securityContext.capabilities.drop=["ALL"]; container "side" must not include "SYS_ADMIN" in securityContext.capabilities.add)"#
    );
    let windows = set(chown, "/os", json!({"name": "windows"}));
    assert_eq!(
        ids(Restricted, v(24), &windows),
        ["capabilities_restricted"]
    );
    assert_eq!(ids(Restricted, v(25), &windows), NONE);
}

#[test]
fn several_checks_in_upstream_order() {
    let spec = json!({
        "hostPID": true,
        "volumes": [{"name": "root", "hostPath": {"path": "/"}}],
        "containers": [{"name": "x", "image": "x", "securityContext": {"privileged": true, "runAsUser": 0}}]
    });
    assert_eq!(
        ids(Baseline, LATEST, &spec),
        ["hostNamespaces", "privileged", "hostPathVolumes"]
    );
    assert_eq!(
        ids(Restricted, LATEST, &spec),
        [
            "hostNamespaces",
            "privileged",
            "restrictedVolumes",
            "allowPrivilegeEscalation",
            "runAsNonRoot",
            "runAsUser",
            "seccompProfile_restricted",
            "capabilities_restricted"
        ]
    );
}

#[test]
fn malformed_input_never_panics() {
    let odd = [
        json!(null),
        json!([]),
        json!("spec"),
        json!({"containers": "nope", "volumes": {}, "securityContext": []}),
        json!({"containers": [null, 3, {"securityContext": {"capabilities": {"add": [1, null]}}}]}),
        json!({"containers": [{"ports": [{"hostPort": "80"}], "securityContext": {"runAsUser": -1}}]}),
        json!({"securityContext": {"sysctls": [{"value": 1}, null]}, "volumes": [null, {"name": 3}]}),
    ];
    for spec in &odd {
        for level in [Baseline, Restricted] {
            let _ = evaluate(level, LATEST, &json!({"annotations": []}), spec);
            let _ = evaluate(level, v(0), &json!(7), spec);
        }
    }
}

#[test]
fn versions_parse_like_upstream() {
    assert_eq!(Version::parse("latest"), Ok(Version::Latest));
    assert_eq!(Version::parse("v1.0"), Ok(v(0)));
    assert_eq!(Version::parse("v1.25"), Ok(v(25)));
    for bad in [
        "", "1.25", "v1.025", "v2.1", "v1.", "v1.x", "Latest", "v1.25.3", " v1.2",
    ] {
        assert!(Version::parse(bad).is_err(), "{bad}");
    }
    assert_eq!(v(25).to_string(), "v1.25");
    assert_eq!(LATEST.to_string(), "latest");
    // Versions past the newest revision evaluate as it.
    assert_eq!(v(99).effective_minor(), policy::LATEST_MINOR);
    assert_eq!("restricted".parse::<Level>(), Ok(Restricted));
    assert!("Restricted".parse::<Level>().is_err());
}

#[test]
fn check_list_is_complete_and_ordered() {
    let list: Vec<_> = policy::checks()
        .map(|c| (c.id, c.level, c.revisions))
        .collect();
    assert_eq!(list.len(), 19);
    for c in policy::checks() {
        assert!(c.revisions.windows(2).all(|w| w[0] < w[1]), "{}", c.id);
        assert!(c.revisions.iter().all(|&r| r <= policy::LATEST_MINOR));
        for o in c.overrides {
            let target = policy::checks().find(|b| b.id == *o).unwrap();
            assert_eq!((c.level, target.level), (Restricted, Baseline));
        }
    }
    let sysctls = policy::checks().find(|c| c.id == "sysctls").unwrap();
    assert_eq!(sysctls.revision_at(v(30)), Some(29));
    assert_eq!(sysctls.revision_at(LATEST), Some(37));
    let run_as_user = policy::checks().find(|c| c.id == "runAsUser").unwrap();
    assert_eq!(run_as_user.revision_at(v(22)), None);
}

#[test]
fn readme_lists_every_check_with_its_revisions() {
    let readme = include_str!("../README.md");
    for c in policy::checks() {
        let revisions: Vec<String> = c.revisions.iter().map(|r| format!("v1.{r}")).collect();
        let row = format!("| `{}` | {} | {}", c.id, c.level, revisions.join(", "));
        assert!(readme.contains(&row), "README lacks: {row}");
    }
}
