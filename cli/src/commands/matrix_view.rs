//! How a matrix reads in `ferry status`: its cells (`unit [os=a]`, ...)
//! stay one row each, under one row for the matrix that counts them by
//! status ([`ferry_pipeline::matrix::group_summary`]).

use ferry_pipeline::matrix::group_summary;
use ferry_proto as pb;

use crate::wire;

/// The row for the matrix `base` of `stage`, when `a` is its first cell:
/// `STAGE/BASE`, `matrix`, and the cells counted by status.
pub fn group_row(stage: &pb::StageView, a: &pb::ActionView) -> Option<[String; 6]> {
    let cells = stage
        .actions
        .iter()
        .map(|c| (c.name.as_str(), wire::action_status(c.status)));
    let (base, summary) = group_summary(&a.name, cells)?;
    Some([
        format!("{}/{base}", stage.name),
        "matrix".to_string(),
        String::new(),
        String::new(),
        String::new(),
        summary,
    ])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_first_cell_brings_the_matrix_row() {
        let cell = |name: &str, status: pb::ActionStatus| pb::ActionView {
            name: name.into(),
            status: status.into(),
            ..Default::default()
        };
        let stage = pb::StageView {
            name: "test".into(),
            actions: vec![
                cell("unit [v=1]", pb::ActionStatus::Succeeded),
                cell("unit [v=2]", pb::ActionStatus::Failed),
                cell("unit [v=3]", pb::ActionStatus::Succeeded),
                cell("lint", pb::ActionStatus::Succeeded),
            ],
            ..Default::default()
        };
        let row = group_row(&stage, &stage.actions[0]).expect("a matrix row");
        assert_eq!(row[0], "test/unit");
        assert_eq!(row[5], "3 cells: 1 Failed, 2 Succeeded");
        assert!(group_row(&stage, &stage.actions[1]).is_none());
        assert!(group_row(&stage, &stage.actions[3]).is_none());
    }
}
