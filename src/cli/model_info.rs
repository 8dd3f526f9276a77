//! `pema model`: the model's identity and sizes, and a check of the LM head.

use anyhow::Result;
use clap::Args;

use pema::model;

use super::{load_model, print_json, ModelChoice};

#[derive(Args)]
pub(super) struct ModelArgs {
    /// Check W·h against llama.cpp's own logits on this text.
    #[arg(long, value_name = "TEXT")]
    check: Option<String>,
    #[arg(long)]
    json: bool,
}

#[derive(serde::Serialize)]
struct ModelReport {
    #[serde(flatten)]
    info: model::ModelInfo,
    check: Option<model::HeadCheck>,
}

pub(super) fn run(model: &ModelChoice, a: ModelArgs) -> Result<()> {
    let model = load_model(model)?;
    let check = match &a.check {
        Some(text) => Some(model.check_head(text)?),
        None => None,
    };
    let r = ModelReport {
        info: model.info().clone(),
        check,
    };
    if a.json {
        return print_json(&r);
    }
    println!("model       {} ({})", r.info.name, r.info.given.display());
    if r.info.path != r.info.given {
        println!(
            "runs from   {} (exact copy, Q8_0 blocks)",
            r.info.path.display()
        );
    }
    println!("identity    {}", r.info.identity);
    println!(
        "hidden size {}, vocabulary {}, trained context {}",
        r.info.n_embd, r.info.n_vocab, r.info.n_ctx_train
    );
    if let Some(c) = r.check {
        println!(
            "LM head     W·h argmax matches llama.cpp at {}/{} positions, max |diff| {:.4}",
            c.argmax_matches, c.positions, c.max_abs_diff
        );
    }
    Ok(())
}
