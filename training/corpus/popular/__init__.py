"""Generated popular music in MoisesDB's layout: arrangements (genre, harmony, form, parts), their
sound (soundfonts, recorded drum kits, synthesised voices, production) and ground truth."""
