mod support;
#[allow(unused_imports)]
use support::*;
