//! The unified-diff reader and applier of fix proposals: the input is `patch\0original file`;
//! every file the patch names is applied to the original.
#![no_main]

use hookline::fixes::patch;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let (diff, original) = text.split_once('\0').unwrap_or((text, ""));
    if let Ok(files) = patch::parse(diff) {
        for file in &files {
            let _ = patch::apply(original, file);
        }
    }
});
