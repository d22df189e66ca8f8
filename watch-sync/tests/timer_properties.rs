//! Property tests: random recipes, random host actions at random times; the
//! timer's invariants hold after every call.

use proptest::prelude::*;
use watch_sync::{TimerAction, TimerEvent, TimerMachine, TimerState, TimerStep};

fn steps() -> impl Strategy<Value = Vec<TimerStep>> {
    prop::collection::vec(prop::option::of(1u32..600), 0..6).prop_map(|durations| {
        durations
            .into_iter()
            .enumerate()
            .map(|(i, duration_s)| TimerStep {
                text: format!("step {i}"),
                label: None,
                duration_s,
            })
            .collect()
    })
}

fn action() -> impl Strategy<Value = TimerAction> {
    prop_oneof![
        Just(TimerAction::Start),
        Just(TimerAction::Pause),
        Just(TimerAction::Resume),
        Just(TimerAction::Next),
        Just(TimerAction::Previous),
        (0u32..7).prop_map(|step| TimerAction::Goto { step }),
        (-700i64..700).prop_map(|seconds| TimerAction::AddTime { seconds }),
        // Anything a client can send, down to i64::MIN: refused, never a panic.
        any::<i64>().prop_map(|seconds| TimerAction::AddTime { seconds }),
        Just(TimerAction::Reset),
    ]
}

/// A host action, or just time passing (`None`), after `gap_ms`.
fn moves() -> impl Strategy<Value = Vec<(u32, Option<TimerAction>)>> {
    prop::collection::vec(
        (0u32..400_000, prop::option::weighted(0.8, action())),
        0..40,
    )
}

fn check_invariants(timer: &TimerMachine, now: i64) {
    let view = timer.view(now);
    let steps = timer.steps();
    if steps.is_empty() {
        assert_eq!(view.state, TimerState::Idle);
        assert_eq!(view.step, None);
        return;
    }
    let current = &steps[view.step_index as usize];
    assert!(view.step_index < view.step_count);
    assert_eq!(view.step.as_ref(), Some(current));
    let timed = current.duration_s.is_some();
    assert_eq!(
        view.deadline_ms.is_some(),
        view.state == TimerState::Running && timed,
        "a deadline exactly while running a timed step: {view:?}"
    );
    assert_eq!(view.remaining_ms.is_some(), timed, "{view:?}");
    assert!(view.remaining_ms.unwrap_or(0) >= 0);
    if view.state == TimerState::Finished {
        assert_eq!(view.step_index as usize, steps.len() - 1);
    }
    if let Some(deadline) = view.deadline_ms {
        assert_eq!(view.remaining_ms, Some((deadline - now).max(0)));
    }
    // What is stored brings back the same timer.
    let back = TimerMachine::restore(steps.to_vec(), timer.auto_advance(), timer.record().clone());
    assert_eq!(&back, timer);
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn invariants_hold_after_every_action(
        steps in steps(),
        auto_advance in any::<bool>(),
        moves in moves(),
    ) {
        let mut timer = TimerMachine::new(steps, auto_advance);
        let mut now: i64 = 1_700_000_000_000;
        let mut last_alert_seq = 0;
        check_invariants(&timer, now);
        for (gap, action) in moves {
            now += i64::from(gap);
            let before = timer.clone();
            let result = match action {
                Some(action) => timer.apply(action, now),
                None => Ok(timer.advance(now)),
            };
            match result {
                Ok(events) => {
                    let changes = events.iter().filter(|e| **e == TimerEvent::Changed).count();
                    prop_assert_eq!(timer.version(), before.version() + changes as u64);
                    for event in &events {
                        if let TimerEvent::Alert { alert_seq, due_ms, .. } = event {
                            prop_assert_eq!(*alert_seq, last_alert_seq + 1);
                            prop_assert!(*due_ms <= now);
                            last_alert_seq = *alert_seq;
                        }
                    }
                }
                Err(refusal) => {
                    // A refused action changes nothing but the passing of time.
                    let mut advanced = before.clone();
                    for event in advanced.advance(now) {
                        if let TimerEvent::Alert { alert_seq, .. } = event {
                            last_alert_seq = alert_seq;
                        }
                    }
                    prop_assert_eq!(&timer, &advanced, "refused {}", refusal);
                    prop_assert!(refusal.code.as_str().starts_with("timer_"));
                }
            }
            // No countdown is left overdue without its alert.
            prop_assert!(timer.next_wake_ms().is_none_or(|wake| wake > now));
            check_invariants(&timer, now);
        }
    }

    #[test]
    fn a_pause_keeps_the_remaining_time_to_the_millisecond(
        duration_s in 1u32..3600,
        run_ms in 0i64..3_600_000,
        paused_ms in 0i64..86_400_000,
    ) {
        let steps = vec![TimerStep { text: "x".into(), label: None, duration_s: Some(duration_s) }];
        let mut timer = TimerMachine::new(steps, false);
        timer.apply(TimerAction::Start, 0).unwrap();
        let left = timer.remaining_ms(run_ms).unwrap();
        timer.apply(TimerAction::Pause, run_ms).unwrap();
        prop_assert_eq!(timer.remaining_ms(run_ms + paused_ms), Some(left));
        timer.apply(TimerAction::Resume, run_ms + paused_ms).unwrap();
        prop_assert_eq!(timer.remaining_ms(run_ms + paused_ms), Some(left));
    }

    #[test]
    fn a_running_countdown_loses_exactly_the_time_that_passed(
        duration_s in 1u32..3600,
        t1 in 0i64..3_600_000,
        dt in 0i64..3_600_000,
    ) {
        let steps = vec![TimerStep { text: "x".into(), label: None, duration_s: Some(duration_s) }];
        let mut timer = TimerMachine::new(steps, false);
        timer.apply(TimerAction::Start, 0).unwrap();
        let a = timer.remaining_ms(t1).unwrap();
        let b = timer.remaining_ms(t1 + dt).unwrap();
        prop_assert_eq!(b, (a - dt).max(0));
    }
}
