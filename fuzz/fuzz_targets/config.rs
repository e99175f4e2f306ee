//! Config::parse on arbitrary text: Ok or Err, never a panic; a config that parses prints as TOML
//! that parses back to the same effective config.

#![no_main]

use apicache::Config;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|text: &str| {
    let Ok(cfg) = Config::parse(text) else {
        return;
    };
    let printed = cfg.effective_toml().expect("a valid config serializes");
    let token = cfg.admin.as_ref().and_then(|a| a.token.clone());
    if let Some(t) = &token {
        assert!(!printed.contains(t.as_str()), "the admin token was printed");
    }
    // An inline token is printed as <redacted>, which loads only once the token is put back.
    let restored = match (&token, cfg.admin.as_ref().and_then(|a| a.token_env.as_ref())) {
        (Some(t), None) => printed.replace("\ntoken = \"<redacted>\"\n", &format!("\ntoken = {}\n", toml::Value::String(t.clone()))),
        _ => printed.clone(),
    };
    let again = match Config::parse(&restored) {
        Ok(c) => c,
        Err(e) => panic!("effective config does not parse back: {e}\n{restored}"),
    };
    assert_eq!(again.effective_toml().expect("serializes"), printed);
    assert_eq!(format!("{again:?}"), format!("{cfg:?}"));
    assert_eq!(again.admin.and_then(|a| a.token), token);
});
