//! The NF4 quant-state JSON (`{p}.quant_state.bitsandbytes__nf4`), written byte for byte as
//! Python's `json.dumps` writes it (`QuantState.as_dict(packed=True)`).

use crate::nf4::{Absmax, Nf4Tensor};

/// Python's `repr(float)` (what `json.dumps` writes for a float): the shortest digits that round
/// trip, in positional notation when the decimal exponent is in `-4..16` (`0.0001`, `123.0`) and
/// in scientific notation otherwise, with a signed exponent of at least two digits (`5e-05`,
/// `1e+16`); `NaN`, `Infinity`, `-Infinity` for the non-finite values (as `json.dumps`).
pub fn python_float_repr(x: f64) -> String {
    if x.is_nan() {
        return "NaN".into();
    }
    if x.is_infinite() {
        return if x > 0.0 { "Infinity" } else { "-Infinity" }.into();
    }
    if x == 0.0 {
        return if x.is_sign_negative() { "-0.0" } else { "0.0" }.into();
    }
    // Rust's `{:e}` prints the shortest round-trip digits, e.g. `-2.5937724113464355e-1`.
    let e = format!("{:e}", x.abs());
    let (mant, exp) = e.split_once('e').unwrap_or((&e, "0"));
    let exp: i32 = exp.parse().unwrap_or(0);
    let digits: String = mant.chars().filter(|c| c.is_ascii_digit()).collect();
    let sign = if x < 0.0 { "-" } else { "" };
    let body = if (-4..16).contains(&exp) {
        if exp < 0 {
            format!("0.{}{}", "0".repeat((-exp - 1) as usize), digits)
        } else {
            let int_len = exp as usize + 1;
            if digits.len() <= int_len {
                format!("{}{}.0", digits, "0".repeat(int_len - digits.len()))
            } else {
                format!("{}.{}", &digits[..int_len], &digits[int_len..])
            }
        }
    } else {
        let m = if digits.len() > 1 {
            format!("{}.{}", &digits[..1], &digits[1..])
        } else {
            digits.clone()
        };
        format!(
            "{m}e{}{:02}",
            if exp < 0 { '-' } else { '+' },
            exp.unsigned_abs()
        )
    };
    format!("{sign}{body}")
}

/// The JSON of `quant_state.bitsandbytes__nf4`, formatted as Python's `json.dumps` does.
pub(super) fn quant_state_json(t: &Nf4Tensor) -> String {
    let shape: Vec<String> = t.shape.iter().map(|d| d.to_string()).collect();
    let mut s = format!(
        "{{\"quant_type\": \"nf4\", \"blocksize\": {}, \"dtype\": \"float32\", \"shape\": [{}]",
        t.blocksize,
        shape.join(", ")
    );
    if let Absmax::Double(d) = &t.absmax {
        let offset = python_float_repr(d.offset as f64);
        s.push_str(&format!(
            ", \"nested_blocksize\": {}, \"nested_dtype\": \"float32\", \"nested_offset\": {}",
            d.blocksize2, offset
        ));
    }
    s.push('}');
    s
}
