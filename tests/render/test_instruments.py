"""pipelines.render.instruments: General MIDI programs and channels from part names."""
import pytest

from pipelines.render.instruments import assign_instruments, choose_program


@pytest.mark.parametrize("name, program", [
    ("Violin I", 40), ("\\n\t:2nd Violin", 40), ("Viola", 41), ("Violoncello", 42), ("Cello", 42),
    ("Contrabass", 43), ("Double Bass", 43), ("Soprano", 52), ("Alto", 52), ("Tenor", 52), ("Bass", 52),
    ("Voice", 53), ("Piano", 0), ("Organ", 19), ("Harpsichord", 6), ("Flute", 73), ("Piccolo", 72),
    ("Oboe", 68), ("English Horn", 69), ("Clarinet in B♭", 71), ("Bassoon", 70), ("Horn in F", 60),
    ("Trumpet in C", 56), ("Trombone", 57), ("Timpani", 47), ("Alto Saxophone", 65), ("Harp", 46),
    ("Guitar", 24), ("Kazoo", 0), ("", 0),
])
def test_choose_program(name, program):
    assert choose_program(name) == program


def test_assign_instruments_piano_staff_and_existing_programs():
    abc = ('X:1\nL:1/8\nK:C\nV:1 treble nm="Piano"\nV:2 bass\nV:3 treble nm="Flute"\n'
           'V:4 treble nm="Oboe"\n%%MIDI program 70\n[V:1]C8|[V:2]C,8|[V:3]c8|[V:4]e8|\n')
    text, instruments = assign_instruments(abc)
    assert [(i.voice, i.channel, i.program) for i in instruments] == [("1", 1, 0), ("2", 1, 0), ("3", 2, 73),
                                                                      ("4", 3, 70)]
    assert text.count("%%MIDI program") == 4  # voice 4 keeps its own line, the others get one each
    assert "V:2 bass\n%%MIDI channel 1\n%%MIDI program 0\n" in text


def test_part_names_are_cleaned_for_engraving():
    text, instruments = assign_instruments('X:1\nK:C\nV:1 treble nm="\\n\t\t\t:Violin 1" snm="\\n\t\t\t:Vln"\n')
    assert 'V:1 treble nm="Violin 1" snm="Vln"' in text
    assert (instruments[0].name, instruments[0].program) == ("Violin 1", 40)


def test_more_than_fifteen_instruments_share_channels():
    voices = "\n".join(f'V:{n} treble nm="{"Flute" if n % 2 else "Oboe"} {n}"' for n in range(1, 19))
    _, instruments = assign_instruments(f"X:1\nK:C\n{voices}\n")
    channels = [i.channel for i in instruments]
    assert 10 not in channels and channels[:15] == [1, 2, 3, 4, 5, 6, 7, 8, 9, 11, 12, 13, 14, 15, 16]
    for late in instruments[15:]:  # shares with an earlier instrument of the same program
        assert any(i.channel == late.channel and i.program == late.program for i in instruments[:15])
