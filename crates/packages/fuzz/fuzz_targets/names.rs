//! Package file names and versions: parsing never panics, what parses prints back to
//! something that parses to an equal value, and written file names read back.
#![no_main]

use ferry_domain::version::Version;
use ferry_packages::filename;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Some(v) = Version::parse(text) {
        let printed = v.to_string();
        let again = Version::parse(&printed).expect("a printed version parses");
        assert_eq!(again.parts, v.parts);
        assert_eq!(again.pre_release, v.pre_release);
        assert_eq!(again.metadata, v.metadata);
        assert_eq!(Version::parse(&v.normalized()), Some(v.clone()));
    }
    if let Ok(p) = filename::parse(text) {
        assert!(filename::is_valid_id(&p.id));
        if let Ok(name) = filename::file_name(&p.id, &p.version, p.format) {
            let back = filename::parse(&name).expect("a written name parses");
            assert_eq!(back.id, p.id);
            assert_eq!(back.version, p.version);
        }
    }
});
