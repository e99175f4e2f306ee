//! Config::parse on arbitrary text: Ok or Err, never a panic; a config that parses prints as TOML
//! that parses back to the same effective config.

#![no_main]

use apicache::Config;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|text: &str| {
    let Ok(cfg) = Config::parse(text) else {
        return;
    };
    let printed = toml::to_string(&cfg).expect("a valid config serializes");
    let again = match Config::parse(&printed) {
        Ok(c) => c,
        Err(e) => panic!("effective config does not parse back: {e}\n{printed}"),
    };
    assert_eq!(toml::to_string(&again).expect("serializes"), printed);
});
