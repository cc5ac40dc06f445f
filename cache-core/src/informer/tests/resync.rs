//! Per-handler resync periods and client-go's clamping rules, in paused time.

use super::*;

/// Sleeps until `t0 + at`.
async fn at(t0: tokio::time::Instant, at: Duration) {
    tokio::time::sleep_until(t0 + at).await;
}

/// client-go's TestListenerResyncPeriods and TestListenerResyncPeriodsDelayed: the informer
/// checks every second; listeners with periods 0, 2 s and 3 s; only the due one gets a resync.
async fn listener_resync_periods(start_delay: Duration) {
    let source = MemorySource::new();
    let rv1 = source.put(pod("pod1", 1));
    let rv2 = source.put(pod("pod2", 2));
    let informer = informer(&source).resync(Duration::from_secs(1)).build();
    let t0 = tokio::time::Instant::now();
    let never = Recorder::new();
    let two = Recorder::new();
    let three = Recorder::new();
    let regs = [
        informer
            .add_event_handler_with(
                never.clone(),
                HandlerOptions::new().resync_period(Duration::ZERO),
            )
            .unwrap(),
        informer
            .add_event_handler_with(
                two.clone(),
                HandlerOptions::new().resync_period(Duration::from_secs(2)),
            )
            .unwrap(),
        informer
            .add_event_handler_with(
                three.clone(),
                HandlerOptions::new().resync_period(Duration::from_secs(3)),
            )
            .unwrap(),
    ];
    let periods: Vec<u64> = regs.iter().map(|r| r.resync_period().as_secs()).collect();
    assert_eq!(periods, [0, 2, 3]);
    assert_eq!(informer.resync_check_period(), Duration::from_secs(1));

    tokio::time::sleep(start_delay).await;
    let (cancel, task) = start(&informer);
    informer.wait_for_sync().await.unwrap();
    for r in [&never, &two, &three] {
        until("the initial list", || r.len() == 2).await;
        let mut lines = r.take();
        lines.sort();
        assert_eq!(
            lines,
            [
                format!("add pod1 {} initial", rv1.as_str()),
                format!("add pod2 {} initial", rv2.as_str())
            ]
        );
    }
    let resync_of = |lines: Vec<String>| {
        let mut lines = lines;
        lines.sort();
        lines
    };
    let both = vec![
        format!("update pod1 {0}->{0}", rv1.as_str()),
        format!("update pod2 {0}->{0}", rv2.as_str()),
    ];

    // The checks happen every second from the start; a listener is due from its registration
    // time plus its period.
    let first_due = |period: u64| {
        let due = Duration::from_secs(period);
        if start_delay >= due {
            start_delay + Duration::from_secs(1)
        } else {
            due
        }
    };
    at(t0, first_due(2) + Duration::from_millis(500)).await;
    assert_eq!(resync_of(two.take()), both, "the 2 s listener");
    assert!(never.lines().is_empty());
    if first_due(3) > first_due(2) {
        assert!(three.lines().is_empty());
        at(t0, first_due(3) + Duration::from_millis(500)).await;
    }
    assert_eq!(resync_of(three.take()), both, "the 3 s listener");
    assert!(never.lines().is_empty());
    assert!(two.lines().is_empty(), "not due again yet");

    at(t0, Duration::from_secs(12)).await;
    assert!(never.lines().is_empty(), "a zero period never resyncs");
    assert!(two.len() >= 6 && three.len() >= 4);
    stop(cancel, task).await;
}

#[tokio::test(start_paused = true)]
async fn only_the_listeners_due_get_a_resync() {
    listener_resync_periods(Duration::ZERO).await;
}

#[tokio::test(start_paused = true)]
async fn a_delayed_start_changes_nothing_but_the_timing() {
    listener_resync_periods(Duration::from_secs(1)).await;
}

/// client-go's TestResyncCheckPeriod, and the rules after the start.
#[tokio::test(start_paused = true)]
async fn resync_check_period_rules() {
    let source = MemorySource::new();
    let informer = informer(&source)
        .resync(Duration::from_secs(12 * 3600))
        .build();
    let add = |period: Option<Duration>| {
        let options = match period {
            Some(p) => HandlerOptions::new().resync_period(p),
            None => HandlerOptions::new(),
        };
        informer
            .add_event_handler_with(Recorder::new(), options)
            .unwrap()
    };
    let secs = Duration::from_secs;
    assert_eq!(informer.resync_check_period(), secs(12 * 3600));

    let l1 = add(Some(Duration::ZERO));
    assert_eq!(informer.resync_check_period(), secs(12 * 3600));
    assert_eq!(l1.resync_period(), Duration::ZERO);

    let default = add(None);
    assert_eq!(
        default.resync_period(),
        secs(12 * 3600),
        "the informer's default"
    );

    let l2 = add(Some(secs(60)));
    assert_eq!(
        informer.resync_check_period(),
        secs(60),
        "lowered before the start"
    );
    assert_eq!(l2.resync_period(), secs(60));

    let l3 = add(Some(secs(55)));
    assert_eq!(informer.resync_check_period(), secs(55));
    assert_eq!(l2.resync_period(), secs(60), "re-derived, unchanged");

    let l4 = add(Some(secs(5)));
    assert_eq!(informer.resync_check_period(), secs(5));
    let periods: Vec<Duration> = [&l1, &l2, &l3, &l4, &default]
        .iter()
        .map(|r| r.resync_period())
        .collect();
    assert_eq!(
        periods,
        [Duration::ZERO, secs(60), secs(55), secs(5), secs(12 * 3600)]
    );

    // Below the minimum: raised to one second, which lowers the check period too.
    let tiny = add(Some(Duration::from_millis(10)));
    assert_eq!(tiny.resync_period(), MINIMUM_RESYNC_PERIOD);
    assert_eq!(informer.resync_check_period(), MINIMUM_RESYNC_PERIOD);

    // After the start, a shorter period is raised to the check period, which stays.
    let informer = self::informer(&source).resync(secs(10)).build();
    let (cancel, task) = start(&informer);
    informer.wait_for_sync().await.unwrap();
    let late = informer
        .add_event_handler_with(
            Recorder::new(),
            HandlerOptions::new().resync_period(secs(3)),
        )
        .unwrap();
    assert_eq!(late.resync_period(), secs(10));
    assert_eq!(informer.resync_check_period(), secs(10));
    let longer = informer
        .add_event_handler_with(
            Recorder::new(),
            HandlerOptions::new().resync_period(secs(25)),
        )
        .unwrap();
    assert_eq!(longer.resync_period(), secs(25));
    stop(cancel, task).await;
}

/// An informer built without a resync never resyncs, whatever a handler asks for after the
/// start (client-go's `determineResyncPeriod`).
#[tokio::test(start_paused = true)]
async fn an_informer_without_resync_resyncs_no_handler() {
    let source = MemorySource::new();
    source.put(pod("pod1", 1));
    let informer = informer(&source).build();
    let (cancel, task) = start(&informer);
    informer.wait_for_sync().await.unwrap();
    let seen = Recorder::new();
    let reg = informer
        .add_event_handler_with(
            seen.clone(),
            HandlerOptions::new().resync_period(Duration::from_secs(2)),
        )
        .unwrap();
    assert_eq!(reg.resync_period(), Duration::ZERO);
    tokio::time::sleep(Duration::from_secs(30)).await;
    assert_eq!(seen.len(), 1, "only the synthetic add: {:?}", seen.lines());
    assert_eq!(informer.reflector_stats().resyncs, 0);
    stop(cancel, task).await;
}

/// A resync through each queue: only due handlers, never transformed again.
#[tokio::test(start_paused = true)]
async fn resync_works_with_every_queue() {
    for kind in [QueueKind::Real, QueueKind::RealPerObject, QueueKind::Delta] {
        let source = MemorySource::new();
        let rv = source.put(pod("pod1", 1));
        let informer = informer(&source)
            .queue(kind)
            .resync(Duration::from_secs(1))
            .build();
        let due = Recorder::new();
        let never = Recorder::new();
        informer.add_event_handler(due.clone()).unwrap();
        informer
            .add_event_handler_with(
                never.clone(),
                HandlerOptions::new().resync_period(Duration::ZERO),
            )
            .unwrap();
        let (cancel, task) = start(&informer);
        informer.wait_for_sync().await.unwrap();
        tokio::time::sleep(Duration::from_millis(3500)).await;
        let expected_sync = format!("update pod1 {0}->{0}", rv.as_str());
        let lines = due.lines();
        assert_eq!(
            lines[0],
            format!("add pod1 {} initial", rv.as_str()),
            "{kind:?}"
        );
        assert_eq!(lines.len(), 4, "{kind:?}: {lines:?}");
        assert!(
            lines[1..].iter().all(|l| *l == expected_sync),
            "{kind:?}: {lines:?}"
        );
        assert_eq!(never.len(), 1, "{kind:?}");
        stop(cancel, task).await;
    }
}
