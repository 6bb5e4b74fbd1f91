//! Arbitrary bytes as a wire `SandboxSpec`, through the daemon's conversion
//! and `validate`. Nothing may panic, and a spec that validates must
//! validate again to the same result (validation is idempotent: the
//! defaults it fills in are themselves valid) and survive the trip back to
//! the wire and in again unchanged.

#![no_main]

use libfuzzer_sys::fuzz_target;
use prost::Message;
use sandboxd::convert::{spec_from_pb, spec_to_pb};
use sandboxd_core::validate::{Policy, validate};
use sandboxd_proto::v1 as pb;

fn policy() -> Policy {
    Policy {
        // So that mount sources under these get past the allow-list and on
        // to the rest of the mount checks.
        allowed_mount_sources: vec!["/srv".into(), "/var/lib/sandboxd-data".into()],
        ..Policy::default()
    }
}

/// An error must name at least one problem, and its message must not grow
/// without bound with the input (client strings are truncated when quoted).
fn check_error(e: &sandboxd_core::validate::ValidationError, input_len: usize) {
    assert!(!e.problems.is_empty(), "an error without problems");
    for p in &e.problems {
        assert!(!p.field.is_empty(), "a problem without a field: {p:?}");
        assert!(
            p.message.len() <= 1024 && p.field.len() <= 1024,
            "an unbounded problem ({} input bytes): {p:?}",
            input_len
        );
    }
    let _ = e.to_string();
}

fuzz_target!(|data: &[u8]| {
    let Ok(wire) = pb::SandboxSpec::decode(data) else {
        return;
    };
    let spec = match spec_from_pb(Some(wire)) {
        Ok(spec) => spec,
        Err(e) => {
            check_error(&e, data.len());
            return;
        }
    };
    let policy = policy();
    let valid = match validate(spec, &policy) {
        Ok(valid) => valid,
        Err(e) => {
            check_error(&e, data.len());
            return;
        }
    };

    // Idempotence: the validated spec (defaults filled in) validates again,
    // to itself.
    let again = validate(valid.spec().clone(), &policy);
    assert_eq!(
        again.as_ref(),
        Ok(&valid),
        "validating a validated spec changed it or failed"
    );

    // Round trip through the wire form, as responses carry it.
    let bytes = spec_to_pb(valid.spec()).encode_to_vec();
    let decoded = pb::SandboxSpec::decode(bytes.as_slice()).expect("own encoding decodes");
    let back = spec_from_pb(Some(decoded)).expect("own encoding converts");
    assert_eq!(&back, valid.spec(), "wire round trip changed the spec");
});
