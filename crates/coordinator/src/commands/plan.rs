//! `coordinator plan`: what a run would do, as text or JSON.

use super::internal;
use crate::{cli, decoder, error::CoordError, report::PlanSummary, run, stdio::out};

pub(super) fn plan(cli: &cli::Cli, p: &cli::PlanArgs) -> Result<i32, CoordError> {
    let (cfg, _) = cli::resolve_plan(cli, p)?;
    let prep = run::prepare(&cfg, &p.input)?;
    let decoder = decoder::plan_choice(&cfg, &p.input, &prep)?;
    let text = if p.json {
        let summary = PlanSummary::new(&prep.plan, prep.layout.slots, prep.layout.slot_bytes());
        let mut v = serde_json::to_value(&summary).map_err(internal)?;
        v["memory"] = serde_json::to_value(&prep.memory).map_err(internal)?;
        v["decoder"] = serde_json::to_value(&decoder).map_err(internal)?;
        // As the report's options name them ("Int8" for signed bytes, whichever way GDAL
        // shows them).
        v["sample_type"] = prep.sample.gdal_name().into();
        v["output_type"] = prep.out_type.gdal_name().into();
        engine::interrupt::check()?;
        if p.chunks {
            v["chunk_list"] = serde_json::to_value(&prep.plan.chunks).map_err(internal)?;
        }
        format!("{}\n", serde_json::to_string_pretty(&v).map_err(internal)?)
    } else {
        engine::interrupt::check()?;
        let mut text = run::describe(&prep, &cfg);
        text.push_str(&format!("decoder      {decoder}\n"));
        if p.chunks {
            for c in &prep.plan.chunks {
                let (w, o) = (c.window, c.out);
                text.push_str(&format!(
                    "chunk {:>6}  in {}x{}+{}+{}  out {}x{}+{}+{}\n",
                    c.id.0, w.w, w.h, w.x, w.y, o.w, o.h, o.x, o.y
                ));
            }
        }
        text
    };
    out(&text);
    Ok(0)
}
