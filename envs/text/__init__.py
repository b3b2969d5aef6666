"""Text games: generated text adventures and the TextWorld adapter, under the text-task contract."""
