use harness::exec::{run_case, CaseConfig};
use harness::report::Mode;
use harness::scenario::parse_str;
use harness::target::{NetfdTarget, Target};
use netfd::Variant;
use std::sync::Arc;

#[test]
#[ignore]
fn scratch_windows() {
    let s = parse_str(r#"{"name":"x","description":"x","transport":"tcp4","connections":1,"threads":[
      {"name":"r","ops":[{"op":"read","conn":0,"bytes":8}]},
      {"name":"c","ops":[{"op":"close","conn":0},{"op":"open","count":4}]}]}"#, "x.json").unwrap();
    let v = std::env::var("VARIANT").unwrap_or("naive-close".into());
    let t: Arc<dyn Target> = Arc::new(NetfdTarget::new(v.parse::<Variant>().unwrap()));
    for a in 1..6 {
        let mut hits = Vec::new();
        let mut taken_len = 0;
        for b in 1..60 {
            let mut sched = vec![0; a];
            sched.extend(std::iter::repeat(1).take(b));
            sched.push(0);
            let mut cc = CaseConfig::new(Mode::Controlled, 7);
            cc.schedule = sched;
            let o = run_case(t.clone(), &s, &cc).unwrap();
            taken_len = taken_len.max(o.schedule.len());
            let k: Vec<&str> = o.found.iter().map(|f| f.kind.name()).collect();
            if !k.is_empty() { hits.push(format!("{b}:{}", k.join("+"))); }
        }
        eprintln!("a={a} max decisions {taken_len}: {}", hits.join(" "));
    }
}
