//! `frostnet summary --app NAME [--no-top]` for the applications of issue 14 prints Keras
//! 3.15.1's `summary()` byte for byte (the gzip'd fixtures of
//! `tools/keras_applications_more_reference.py`; `--no-top` is Keras's
//! `include_top=False, pooling="avg"`).

use flate2::read::GzDecoder;
use std::io::Read;
use std::process::Command;

fn keras_summary(case: &str) -> String {
    let path = format!(
        "{}/../frostnet/tests/fixtures/applications/{case}_summary.txt.gz",
        env!("CARGO_MANIFEST_DIR")
    );
    let mut s = String::new();
    GzDecoder::new(std::fs::File::open(&path).unwrap())
        .read_to_string(&mut s)
        .unwrap();
    s
}

#[test]
fn summary_app_prints_keras_summaries() {
    let cases = [
        ("resnet101", false, "resnet101"),
        ("resnet101", true, "resnet101_notop"),
        ("resnet152", false, "resnet152"),
        ("resnet50_v2", false, "resnet50_v2"),
        ("resnet50_v2", true, "resnet50_v2_notop"),
        ("resnet101_v2", false, "resnet101_v2"),
        ("resnet152_v2", false, "resnet152_v2"),
        ("resnet152_v2", true, "resnet152_v2_notop"),
        ("xception", false, "xception"),
        ("xception", true, "xception_notop"),
        ("densenet121", false, "densenet121"),
        ("densenet121", true, "densenet121_notop"),
        ("densenet169", false, "densenet169"),
        ("densenet201", false, "densenet201"),
        ("mobilenet", false, "mobilenet"),
        ("mobilenet", true, "mobilenet_notop"),
        ("inception_resnet_v2", false, "inception_resnet_v2"),
        ("inception_resnet_v2", true, "inception_resnet_v2_notop"),
        ("nasnet_mobile", false, "nasnet_mobile"),
        ("nasnet_mobile", true, "nasnet_mobile_notop"),
    ];
    for (app, no_top, case) in cases {
        let mut args = vec!["summary", "--app", app];
        if no_top {
            args.push("--no-top");
        }
        let out = Command::new(env!("CARGO_BIN_EXE_frostnet"))
            .args(&args)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let got = String::from_utf8(out.stdout).unwrap();
        assert!(
            got == keras_summary(case),
            "{args:?} differs from Keras's {case}"
        );
    }
}
