//! Properties every ordering must have, on arbitrary input: parsing never panics (bad input is
//! an error), a version equals itself, comparisons are antisymmetric, and the lenient apk
//! comparison is too.

use std::cmp::Ordering;

use proptest::prelude::*;
use vuln::{Ecosystem, apk, compare};

/// Version-like strings (the characters every grammar here cares about), or anything at all.
fn version_like() -> impl Strategy<Value = String> {
    prop_oneof![
        4 => "[0-9a-zA-Z.~+:_^!*=-]{0,14}",
        1 => any::<String>(),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(3000))]

    #[test]
    fn orderings_are_total_on_what_they_accept(a in version_like(), b in version_like()) {
        for eco in Ecosystem::ALL {
            let ab = compare(eco, &a, &b);
            let ba = compare(eco, &b, &a);
            match (&ab, &ba) {
                (Ok(x), Ok(y)) => prop_assert_eq!(*x, y.reverse(), "{} {:?} {:?}", eco, a, b),
                _ => prop_assert_eq!(ab.is_ok(), ba.is_ok(), "{} {:?} {:?}", eco, a, b),
            }
            if vuln::validate(eco, &a).is_ok() {
                prop_assert_eq!(compare(eco, &a, &a), Ok(Ordering::Equal), "{} {:?}", eco, a);
            }
        }
        prop_assert_eq!(apk::compare_lenient(&a, &b), apk::compare_lenient(&b, &a).reverse());
    }
}
