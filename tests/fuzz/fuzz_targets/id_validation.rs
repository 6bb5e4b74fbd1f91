//! Arbitrary strings as sandbox references (ids or names) and request ids.
//! Invariants: an id is always an acceptable reference; an accepted
//! reference or request id can never act as a path (no '/', NUL or "..");
//! error messages stay bounded whatever the input's size.

#![no_main]

use libfuzzer_sys::fuzz_target;
use sandboxd_core::validate::{ValidationError, is_id, validate_ref, validate_request_id};

fn check_error(e: &ValidationError) {
    assert!(!e.problems.is_empty(), "an error without problems");
    for p in &e.problems {
        assert!(p.message.len() <= 1024, "an unbounded message: {p:?}");
    }
    let _ = e.to_string();
}

fn never_a_path(s: &str) {
    assert!(!s.contains('/'), "accepted {s:?} with a '/'");
    assert!(!s.contains('\0'), "accepted {s:?} with a NUL");
    assert!(!s.contains(".."), "accepted {s:?} with '..'");
    assert!(s != ".", "accepted '.'");
    assert!(s.is_ascii(), "accepted non-ASCII {s:?}");
}

fuzz_target!(|data: &[u8]| {
    // Valid UTF-8 only (the wire's strings are); keep the valid prefix of
    // anything else so that no input is wasted.
    let s = match std::str::from_utf8(data) {
        Ok(s) => s,
        Err(e) => std::str::from_utf8(&data[..e.valid_up_to()]).expect("valid prefix"),
    };

    let id = is_id(s);
    if id {
        assert_eq!(s.len(), 16);
        assert!(s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')));
    }

    match validate_ref("ref", s) {
        Ok(()) => {
            never_a_path(s);
            assert!(!s.is_empty(), "accepted an empty reference");
            assert!(id || s.len() <= 63, "accepted a {}-byte name", s.len());
        }
        Err(e) => {
            assert!(!id, "rejected the id {s:?}: {e}");
            check_error(&e);
        }
    }

    match validate_request_id(s) {
        Ok(()) => {
            assert!(s.len() <= 128, "accepted a {}-byte request id", s.len());
            assert!(!s.contains('/') && !s.contains('\0'));
        }
        Err(e) => check_error(&e),
    }
});
