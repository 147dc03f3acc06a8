"""`cypher live`'s session end to end over real ports: JACK MIDI clock in, OSC over UDP, the answer recorded by a
JACK client on the other end of the output, on the bar lines after the opponent's turn."""

import queue
from dataclasses import dataclass
import threading
import time

import mido
import numpy as np
import pytest
from pythonosc.dispatcher import Dispatcher
from pythonosc.osc_server import ThreadingOSCUDPServer
from pythonosc.udp_client import SimpleUDPClient

from bridge.clockgen import ClockSender
from bridge.midi import MidiEventSource, open_backend, open_output
from bridge.osc import OscServer, Replies
from engine.control import EngineState
from engine.live import LiveParts, LiveSession
from engine.play.output import JackOutput, RingSink
from engine.listen.capture import JackCapture
from engine.play.record import Player, Recorder
from engine.play.ring import RingBuffer
from engine.perform import Knobs, shape_style
from engine.presets import load_style
from engine.worker import LineWorker, WorkerConfig
from engine.write.grid import flow_grid
from engine.render import OPPONENT_VOICE, speak_on_grid
from engine.synth import synth_beat
from engine.voice.speak import load_voice

pytestmark = [pytest.mark.jack, pytest.mark.models]

RATE = 48000
TEMPO_BPM = 150.0
BAR_CLOCKS = 96


@dataclass
class Played:
    """What one run of a live session left: the session, its sink, the panel's verse lines, the recording."""

    session: LiveSession
    sink: RingSink
    verse: list[tuple]
    drift: list[tuple]
    bar_frames: list[float]
    recorded: np.ndarray


TYPED = ("you came to the cypher with a borrowed rhyme", "your flow is stuck in a different time")


def play_set(bars_of_clock: int, knob_moves: list[tuple[float, str, object]] = (), typed: tuple[str, ...] = TYPED,
             vocal: np.ndarray | None = None, tempo_bpm: float = TEMPO_BPM, beat: np.ndarray | None = None,
             beat_late_s: float = 0.0, turn_bars: int = 2, clocks: int | None = None) -> Played:
    """Run `cypher live`'s session over JACK for `bars_of_clock` bars of a jittered clock: the panel arms a 2-bar
    exchange and types the opponent's lines; `knob_moves` are (seconds after the first clock, OSC address, value)
    sent while the clock runs; `vocal`, if given, is played into the engine's vocal input from bar 1's line, and
    `beat` into its beat input, `beat_late_s` after it."""
    verse: list[tuple] = []
    dispatcher = Dispatcher()
    drift: list[tuple] = []
    dispatcher.map("/cypher/verse/line", lambda address, *args: verse.append(args))
    dispatcher.map("/cypher/sync/drift", lambda address, *args: drift.append(args))
    panel = ThreadingOSCUDPServer(("127.0.0.1", 0), dispatcher)
    threading.Thread(target=panel.serve_forever, daemon=True).start()

    events: queue.Queue = queue.Queue()
    commands: queue.Queue = queue.Queue()
    backend = open_backend("jack")
    midi = MidiEventSource(backend, "cypher-live-test in", events, virtual=True)
    daw = open_output(backend, "cypher-live-test in")
    recorder = Recorder("liverec", seconds=4.0 + bars_of_clock * 240.0 / tempo_bpm)
    players = {name: Player(f"live{name}") for name, audio in (("vocal", vocal), ("beat", beat)) if audio is not None}
    capture = (JackCapture({name: f"live{name}:out" for name in players}, RATE, client_name="cypher-live-in")
               if players else None)
    output = JackOutput(RingBuffer(16 * RATE), RATE, connect_to="liverec:in", client_name="cypher-live-test")
    output.start()
    replies = Replies("127.0.0.1", panel.server_address[1])
    server = OscServer(commands, replies, port=0)
    # the models' process, warmed up on the style's voice, as `cypher live` starts it
    writer = LineWorker(WorkerConfig("lexicon", RATE, warm_voice=load_style("boom_bap").voice,
                                     warm_ears=vocal is not None))
    sink = RingSink(output, 0)
    session = LiveSession(LiveParts(midi, server, replies, sink, writer, capture=capture,
                                    hearing=writer if vocal is not None else None), EngineState.initial("boom_bap"),
                                    events,
                          commands)
    stop = threading.Event()
    runner = threading.Thread(target=session.run, args=(stop,))
    runner.start()
    sender = ClockSender(daw, tempo_bpm, jitter_rms_s=0.001, seed=1,
                         max_clocks=clocks if clocks is not None else bars_of_clock * BAR_CLOCKS, lead_s=0.3)
    try:
        knob = SimpleUDPClient("127.0.0.1", server.port)
        for address, value in [("/cypher/turn/opponent", turn_bars), ("/cypher/turn/ours", turn_bars),
                               ("/cypher/arm/set", 1)]:
            knob.send_message(address, value)
        for line in typed:
            knob.send_message("/cypher/opponent/text", line)
        time.sleep(0.3)
        sender.start()
        for name, player in players.items():
            late_s = beat_late_s if name == "beat" else 0.0
            player.play_at(sender.ideal_time_s(0) + late_s, vocal if name == "vocal" else beat)
        for at_s, address, value in knob_moves:
            time.sleep(max(0.0, sender.ideal_time_s(0) + at_s - time.monotonic()))
            knob.send_message(address, value)
        assert sender.wait(timeout_s=30.0)
        sender.stop()  # MIDI Stop, right after the last clock, as the DAW's transport stops
        time.sleep(0.5)
    finally:
        sender.stop()
        daw.close()  # the DAW's transport stops before the session closes its input
        stop.set()
        runner.join(10.0)
        output.close()
        writer.close()
        panel.shutdown()
        for client in [*players.values(), capture]:
            if client is not None:
                client.close()
    assert not runner.is_alive()
    bar_frames = [recorder.frame_of(sender.ideal_time_s(b * BAR_CLOCKS)) - recorder.first
                  for b in range(bars_of_clock)]
    recorded = recorder.audio
    recorder.close()
    return Played(session, sink, verse, drift, bar_frames, recorded)


def rms(audio: np.ndarray, lo: float, hi: float) -> float:
    part = audio[int(lo):int(hi)]
    return float(np.sqrt(np.mean(part ** 2))) if len(part) else 0.0


def test_live_session_answers_typed_lines_on_the_bar_lines_after_the_opponent(jack_server: None) -> None:
    """The density knob, turned up while the opponent raps, fills the answer's grid (the turn reads the knobs as it
    writes each line)."""
    played = play_set(5, knob_moves=[(0.1, "/cypher/param/density", 1.0)])
    session, sink, verse, bar_frames = played.session, played.sink, played.verse, played.bar_frames
    dense = shape_style(load_style("boom_bap"), Knobs(density=1.0))
    grids = {r.bar: r.line.plan.grid for r in session.recent_turns[0].report.renders}
    assert [grids[b].slots for b in (2, 3)] == [g.slots for g in flow_grid(dense.flow, 2)]
    assert all(len(grids[b].slots) > len(g.slots) for b, g in zip((2, 3), flow_grid(load_style("boom_bap").flow, 2)))
    assert session.turns_started == 2  # the second starts on bar 5, after the answer (not yet heard)
    assert [(bar, line) for bar, line, _ in verse] == [(3, 1), (4, 2)]  # the song's bars, from 1
    assert any(w in verse[0][2].split() for w in ("cypher", "borrowed", "rhyme"))
    assert sink.dropped_bars == 0 and sink.late_frames == 0
    # the opponent raps bars 1-2 (zero-based 0-1); the answer sounds in bars 3-4 and not before
    before = rms(played.recorded, 0, bar_frames[2] - 0.2 * RATE)
    answer = [rms(played.recorded, bar_frames[2], bar_frames[3]), rms(played.recorded, bar_frames[3], bar_frames[4])]
    assert min(answer) > 0.02 and before < 1e-4


def test_when_the_daw_stops_mid_verse_cypher_stops_with_it(jack_server: None) -> None:
    """Live's transport stops halfway through the answer's first bar (bar 3): the answer fades out there and nothing
    more of it plays, the lines written stay, and the engine carries on (the session ends cleanly)."""
    played = play_set(5, clocks=2 * BAR_CLOCKS + BAR_CLOCKS // 2)
    session, frames, bar_len = played.session, played.bar_frames, played.bar_frames[1] - played.bar_frames[0]
    stop_at = frames[2] + bar_len / 2
    assert rms(played.recorded, frames[2], stop_at - 0.05 * RATE) > 0.02  # the answer's first half bar sounds
    assert rms(played.recorded, stop_at + 0.1 * RATE, frames[2] + 2.5 * bar_len) < 1e-4  # then nothing of it
    first = session.recent_turns[0]
    assert first.stopped and first.report.lines and first.report.lines[0].plan.bar == 0
    assert session.state.turn == "idle" and played.verse


def test_a_style_switch_from_the_panel_lands_on_the_next_bar_line(jack_server: None) -> None:
    """Grime asked for early in the answer's first bar (bar 3): bar 4 is grime, made again in time; bar 3 stays."""
    bar_s = 4 * 60.0 / TEMPO_BPM
    played = play_set(5, knob_moves=[(2 * bar_s + 0.1, "/cypher/style/set", "grime")])
    session, sink = played.session, played.sink
    assert session.style_switches == 1 and session.state.style == "grime"
    assert session.turns_started == 2 and session.turn is not None and session.turn.style.name == "grime"
    first = session.recent_turns[0]  # the exchange the switch fell in
    assert first.restyles == 1
    grids = {r.bar: r.line.plan.grid for r in first.report.renders}
    assert sorted(grids) == [2, 3]  # zero-based: song bars 3 and 4
    assert grids[2].slots == flow_grid(load_style("boom_bap").flow, 1)[0].slots  # before the switch: kept
    assert grids[3].slots == flow_grid(load_style("grime").flow, 2)[1].slots  # from its bar line: grime
    assert [p.bar for p in sink.placements].count(2) == 1 and sink.dropped_bars == 0
    # bar 4 sounds (grime is sparse: quieter over the bar than boom bap, far above silence's 1e-4), and all of it
    # arrived before its bar line
    assert rms(played.recorded, played.bar_frames[3], played.bar_frames[4]) > 0.005 and sink.late_frames == 0
    assert [args[0] for args in played.verse][-1] == 4  # the panel's last verse line is bar 4's grime line


def test_the_opponent_heard_on_the_vocal_bus_is_answered(jack_server: None) -> None:
    """No typed lines: the opponent's two bars are played into the engine's vocal input (a second Piper voice on
    the grid, as the demo raps them); the engine recognises them in its worker and answers their words."""
    tempo_bpm = 100.0
    style = load_style("boom_bap")
    lines = ["you came to the cypher with a borrowed rhyme", "i run this city and i never lose time"]
    voice = load_voice("piper", RATE, **OPPONENT_VOICE)
    vocal = speak_on_grid(voice, style, lines, 0, 2, tempo_bpm, RATE)
    played = play_set(5, typed=(), vocal=vocal, tempo_bpm=tempo_bpm)
    first = played.session.recent_turns[0]
    heard = [" ".join(w.text for w in bar).lower() for bar in first.report.heard]
    assert len(heard) == 2
    for said, got in zip(lines, heard):  # most of each line is understood
        words = set(said.split())
        assert len(words & set(got.replace(",", "").replace(".", "").split())) >= len(words) // 2, (said, got)
    answer_words = {w for r in first.report.renders for w in r.line.plan.answer_words}
    assert answer_words & set(" ".join(lines).split()), answer_words  # the answer takes up what it heard
    assert [args[0] for args in played.verse[:2]] == [3, 4] and played.sink.dropped_bars == 0


def test_an_opponent_who_goes_quiet_is_answered_on_the_next_bar_line(jack_server: None) -> None:
    """A 4-bar turn in which the opponent raps two bars and stops: after 1.5 s of quiet on the vocal bus the
    answer starts on the next bar line (bar 4), not after the bar count (bar 5), with the heard words."""
    tempo_bpm = 150.0
    style = load_style("boom_bap")
    lines = ["you came to the cypher with a borrowed rhyme", "i run this city and i never lose time"]
    vocal = speak_on_grid(load_voice("piper", RATE, **OPPONENT_VOICE), style, lines, 0, 2, tempo_bpm, RATE)
    played = play_set(9, typed=(), vocal=vocal, tempo_bpm=tempo_bpm, turn_bars=4)
    session = played.session
    assert session.early_ends == 1
    first = session.recent_turns[0]
    # zero-based: the voice ended in bar 1, quiet was heard in bar 2, the answer starts on bar 3's line; the quiet bar
    # is not listened to
    assert first.answer_bar == 3 and first.heard_bars == 2 and len(first.report.heard) == 2
    assert sorted(r.bar for r in first.report.renders) == [3, 4, 5, 6]
    assert {p.bar for p in played.sink.placements} >= {3, 4, 5, 6}
    # the panel's verse (song bars from 1): a line made before the turn ended is announced again at its new bar
    assert {line: bar for bar, line, _ in played.verse if bar <= 7} == {1: 4, 2: 5, 3: 6, 4: 7}
    answer_words = {w for r in first.report.renders for w in r.line.plan.answer_words}
    assert answer_words & set(" ".join(lines).split()), answer_words
    # the answer sounds from bar 4's line on (before it: the opponent's bars and the quiet)
    frames = played.bar_frames
    assert rms(played.recorded, frames[3], frames[4]) > 0.02 > 1e-4 > rms(played.recorded, 0, frames[3] - 0.2 * RATE)


def test_a_beat_bus_late_against_the_clock_is_reported_with_the_sync_delay_to_set(jack_server: None) -> None:
    """The beat played into the beat input 20 ms behind the clock: the panel is told, with Live's setting."""
    tempo_bpm = 120.0
    style = load_style("boom_bap")
    bars = 9
    beat = synth_beat(style.beat, tempo_bpm, bars, RATE, seed=0)
    played = play_set(bars, typed=(), beat=beat, beat_late_s=0.020, tempo_bpm=tempo_bpm)
    watch = played.session.beat_watch
    assert watch is not None and watch.bars_heard >= bars - 2
    assert played.drift, ("no drift report reached the panel", watch.watch.matches, watch.watch.offset_ms)
    offset_ms, advice = played.drift[0]  # the first verdict; a loaded machine's late clocks may move later ones
    # 20 ms, give or take 10 (the live loop's onset tolerance): JACK MIDI adds to the clock's arrival, and JACK's
    # host-to-frame mapping of the captured beat moves by several ms while this test's clients join on a loaded
    # machine (a clean-clone CI run read 11.3 ms here)
    assert 10.0 < offset_ms < 30.0, played.drift
    assert "late" in advice and "raise Live's MIDI Clock Sync Delay by" in advice


def test_with_no_clock_the_beat_bus_drives_the_turns(jack_server: None) -> None:
    """Audio-only mode, as `cypher live --no-clock --beat-in` runs it: no MIDI clock at all (a clock on the MIDI
    input is ignored); a kit played into the beat input starts the song on its downbeat, the opponent's typed
    2 bars follow, and the answer is placed on the kit's bar lines."""
    from engine.listen.beatclock import BeatBusClock
    from engine.synth import beat_times_s

    tempo_bpm, bars = 120.0, 14
    kit = synth_beat(load_style("boom_bap").beat, tempo_bpm, bars, RATE, seed=0)
    events: queue.Queue = queue.Queue()
    commands: queue.Queue = queue.Queue()
    backend = open_backend("jack")
    midi = MidiEventSource(backend, "cypher-noclock in", events, virtual=True, take_clock=False)
    daw = open_output(backend, "cypher-noclock in")
    recorder = Recorder("nocklrec", seconds=bars * 2.0 + 4.0)
    player = Player("nockkit")
    capture = JackCapture({"beat": "nockkit:out"}, RATE, client_name="cypher-nock-in")
    output = JackOutput(RingBuffer(16 * RATE), RATE, connect_to="nocklrec:in", client_name="cypher-nock-out")
    output.start()
    replies = Replies("127.0.0.1", 9)  # nobody listens: the panel is not part of this test
    server = OscServer(commands, replies, port=0)
    writer = LineWorker(WorkerConfig("lexicon", RATE, warm_voice=load_style("boom_bap").voice))
    sink = RingSink(output, 0)
    beat_clock = BeatBusClock(capture, events)
    session = LiveSession(LiveParts(midi, server, replies, sink, writer, capture=capture, beat_clock=beat_clock),
                          EngineState.initial("boom_bap"), events, commands)
    assert session.beat_watch is None  # nothing to compare the beat with: it is the clock
    stop = threading.Event()
    runner = threading.Thread(target=session.run, args=(stop,))
    runner.start()
    try:
        panel = SimpleUDPClient("127.0.0.1", server.port)
        for address, value in [("/cypher/turn/opponent", 2), ("/cypher/turn/ours", 2), ("/cypher/arm/set", 1)]:
            panel.send_message(address, value)
        for line in TYPED:
            panel.send_message("/cypher/opponent/text", line)
        daw.send(mido.Message("start"))  # a DAW's clock on the MIDI input: ignored in this mode
        start_s = time.monotonic() + 0.3
        player.play_at(start_s, kit)
        time.sleep(0.3 + len(kit) / RATE)
    finally:
        daw.close()
        stop.set()
        runner.join(10.0)
        output.close()
        writer.close()
        capture.close()
        player.close()
    assert not runner.is_alive()
    assert session.turns_started >= 1 and midi.ignored >= 1
    renders = session.recent_turns[0].report.renders
    assert recorder.first is not None and renders
    at = round(recorder.frame_of(renders[0].start_time_s)) - recorder.first
    recorded = recorder.audio
    recorder.close()
    downbeats = [start_s + t for t in beat_times_s(tempo_bpm, bars, RATE)[0::4]]
    assert len(renders) == 2
    for render in renders:  # each answer bar's line predicted on one of the kit's downbeats
        assert min(abs(render.start_time_s - d) for d in downbeats) < 0.015, (
            render.start_time_s - start_s, beat_clock.clock.starts, beat_clock.clock.rephased, beat_clock.breaks,
            session.follower.tempo_changes, session.follower.outliers)
    assert sink.dropped_bars == 0 and {p.bar for p in sink.placements} >= {r.bar for r in renders}
    bar_len = round(4 * 60.0 / tempo_bpm * RATE)
    assert rms(recorded, at, at + bar_len) > 0.02  # the answer sounds in its bar
